"""Small pieces of the training loop: the model container, optimizer groups, device and precision."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.run.spec import Recipe
from methods import BatchContext, DomainBatch, Quantizer, QuantMethod

if TYPE_CHECKING:  # ddp_forward imports this module
    from benchmarks.run.ddp_forward import DdpStepForward


class TaskModel(nn.Module):
    """The quantized network plus, for DANN, a full-precision domain head kept outside it."""

    net: Backbone

    def __init__(self, net: Backbone, domain_head: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.domain_head = domain_head


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def revgrad(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Gradient reversal layer (Ganin & Lempitsky): identity forward, gradient × (−coefficient) backward."""
    return _ReverseGrad.apply(x, coefficient)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD with momentum, or Adam (``recipe.optimizer``, DomainBed's protocol). Quantizer parameters (step
    sizes, …) and BN/bias parameters get no weight decay: decaying a step size towards zero shrinks the
    quantization range for no reason."""
    quantizer_params = {id(p) for m in model.modules() if isinstance(m, Quantizer) for p in m.parameters()}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if id(p) in quantizer_params or p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adam":
        return torch.optim.Adam([g for g in groups if g["params"]], lr=recipe.lr)
    return torch.optim.SGD([g for g in groups if g["params"]], lr=recipe.lr, momentum=recipe.momentum)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; valid: auto, cpu")
    return torch.device(device)


def amp_context(device: torch.device, amp: str):
    """bf16 autocast on CUDA when the recipe asks for it; nothing on CPU (bf16 there is slower)."""
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_loss_fn(model: TaskModel, method: QuantMethod, context: BatchContext, device: torch.device, amp: str,
                 tally: dict[str, Any],
                 ddp: DdpStepForward | None = None) -> Callable[[DomainBatch], torch.Tensor]:
    """The loss of one domain part of a step, as ``method.training_step`` calls it: the context set, features
    under autocast, the method's task loss on labelled parts (with a running accuracy tally kept on the
    device: no synchronisation), the DANN domain loss through gradient reversal (``tally["grl"]``), the
    method's extra loss. The trainer and the speed benchmark both use it, so the benchmark times the real
    step. In a data-parallel run ``ddp`` computes the part's network outputs through DistributedDataParallel
    (``benchmarks.run.ddp_forward``); without it, the one-process operations run as they always have."""

    def loss_fn(part: DomainBatch) -> torch.Tensor:
        context.set_batch(part.y, part.domain)
        with amp_context(device, amp):
            outputs = ddp(part.x, part.y is not None, tally["grl"]) if ddp is not None else None
            features = model.net.features(part.x) if outputs is None else outputs.features
            loss = features.new_zeros(())
            if part.y is not None:
                logits = model.net.classify(features) if outputs is None else outputs.logits
                assert logits is not None  # a labelled part's outputs hold its logits
                loss = loss + method.task_loss(logits, part.y, features, context)
                tally["correct"] += (logits.argmax(1) == part.y).sum()
                tally["seen"] += part.y.numel()
            if model.domain_head is not None:
                domain_logits = (model.domain_head(revgrad(features, tally["grl"])) if outputs is None
                                 else outputs.domain_logits)
                assert domain_logits is not None  # a model with a domain head: its outputs hold them
                loss = loss + F.cross_entropy(domain_logits, torch.full_like(domain_logits[:, 0], part.domain,
                                                                             dtype=torch.long))
            extra = method.extra_loss(model.net)
            total = loss + extra if extra is not None else loss
            if ddp is not None:
                ddp.part_done(total)
            return total

    return loss_fn
