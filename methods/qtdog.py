"""QT-DoG: quantization-aware training for domain generalization (Javed, Le, Salzmann, ICML 2025).

What the authors' code (``saqibjaved1/QT-DoG``) does, and what this file does (``docs/methods/qtdog.md``):

* LSQ on **weights only**, one step size per output channel, signed range [−2^(b−1), 2^(b−1)−1] (7 bits by
  default; any ``w_bits``), step init s_c = 2·mean|w_c|/√Q_P, step-gradient scale 1/√(Q_P·numel(W)) (the whole
  tensor's numel even per channel, as their code). The kernel is LSQ's (``methods/lsq_kernel.py``).
* Activations untouched; only ``Conv2d`` layers are quantized, every ``Linear`` stays full precision. The stem
  conv is quantized too (their ``excepts`` never matches, see the docs); ``layer_policy first=fp`` keeps it
  FP.
* Quantization switches on at ``onset_step`` (steps of this run): until then the network trains in full
  precision; at onset each step size is initialised from the current weights.
* ``rebuild_optimizer=True`` (default, the paper's intent): at onset the optimizer starts afresh (its state
  cleared) over every trainable parameter, step sizes included. ``False`` reproduces the authors' code, whose
  optimizer keeps the replaced weight Parameters: under PyTorch ≥ 2 neither the quantized conv weights nor the
  step sizes are ever updated after onset; here they are frozen at onset to the same effect.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from methods.base import ActQuantizer, LayerPolicy, LossFn, QuantMethod, WeightQuantizer
from methods.context import DomainBatch
from methods.layers import QuantConv2d
from methods.lsq_kernel import lsq_quantize, lsq_range
from methods.registry import register


def per_channel_init(weight: torch.Tensor, q_p: int) -> torch.Tensor:
    """s_c = 2·mean|w_c|/√Q_P for each output channel, shaped (C, 1, ..., 1); floored to stay positive."""
    dims = list(range(1, weight.dim()))
    return (2.0 * weight.abs().mean(dim=dims, keepdim=True) / math.sqrt(q_p)).clamp_min(1e-8)


class ChannelLsqWeightQuantizer(WeightQuantizer):
    """LSQ with a step per output channel, inactive (identity) until ``switch_on``."""

    active: torch.Tensor
    per_channel = True  # at most 2^bits values within each output channel

    def __init__(self, bits: int, active: bool = False) -> None:
        super().__init__(bits)
        self.step = nn.Parameter(torch.ones(1))
        self.register_buffer("active", torch.tensor(bool(active)))

    def init_from_weight(self, weight: torch.Tensor) -> None:
        # The step takes the weight's per-channel shape now (before any optimizer exists), so the optimizer,
        # the checkpoint and a rebuilt finished model all see one (C, 1, 1, 1) parameter.
        self.step = nn.Parameter(per_channel_init(weight.detach(), lsq_range(self.bits, True)[1]))

    @torch.no_grad()
    def switch_on(self, weight: torch.Tensor) -> None:
        self.step.copy_(per_channel_init(weight, lsq_range(self.bits, True)[1]))
        self.active.fill_(True)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled or not bool(self.active):
            return w
        q_n, q_p = lsq_range(self.bits, True)
        return lsq_quantize(w, self.step, q_n, q_p, 1.0 / math.sqrt(w.numel() * q_p))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel=True, active={bool(self.active)}"


def quantized_convs(model: nn.Module) -> list[tuple[QuantConv2d, ChannelLsqWeightQuantizer]]:
    """(layer, its weight quantizer) for every layer QT-DoG quantizes."""
    return [(m, m.weight_quant) for m in model.modules()
            if isinstance(m, QuantConv2d) and isinstance(m.weight_quant, ChannelLsqWeightQuantizer)]


def rebuild_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """A fresh optimizer over every trainable parameter: its state (Adam moments, momentum) cleared, and any
    trainable parameter not yet in a group added to the last group (the no-decay one)."""
    optimizer.state.clear()
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [p for p in model.parameters() if p.requires_grad and id(p) not in held]
    if missing:
        optimizer.param_groups[-1]["params"].extend(missing)


@register("qtdog")
class QTDoG(QuantMethod):
    act_site = "input"
    quantized_types = (nn.Conv2d,)
    quantizes_activations = False
    # The code quantizes every Conv2d, the stem included; the classifier is Linear and so stays FP anyway.
    default_layer_policy = LayerPolicy("same", "same")
    defaults: ClassVar[dict[str, Any]] = {"onset_step": 0, "rebuild_optimizer": True}
    search_space: ClassVar[dict[str, tuple]] = {"onset_step": ("int", 0, 2000)}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.steps_done = 0

    def validate(self) -> None:
        onset = self.hparams["onset_step"]
        if isinstance(onset, bool) or not isinstance(onset, int) or onset < 0:
            raise ValueError(f"invalid qtdog.onset_step={onset!r}; valid: an integer >= 0")
        if not isinstance(self.hparams["rebuild_optimizer"], bool):
            raise ValueError(f"invalid qtdog.rebuild_optimizer={self.hparams['rebuild_optimizer']!r}; "
                             "valid: true, false")

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        # Onset 0: quantized from the start (steps initialised from the loaded weights, as at a later onset).
        return ChannelLsqWeightQuantizer(bits, active=self.hparams["onset_step"] == 0)

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        if bits != 32:
            raise ValueError(f"invalid activation bits {bits} for qtdog; valid: 32 (QT-DoG quantizes weights "
                             "only)")
        return ActQuantizer(32)  # 32 bits: an identity, so the layer report shows activations in FP

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, parts: Sequence[DomainBatch],
                      loss_fn: LossFn) -> torch.Tensor:
        onset = self.hparams["onset_step"]
        if self.steps_done == onset:
            self.switch_on(model, optimizer)
        elif self.steps_done > onset and not self.hparams["rebuild_optimizer"]:
            self._freeze_as_code(model)  # after a resume: requires_grad is not part of a checkpoint
        loss = super().training_step(model, optimizer, parts, loss_fn)
        self.steps_done += 1
        return loss

    def switch_on(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Quantization on: steps initialised from the current weights, then the optimizer rebuilt (or, as the
        authors' code, left alone, so the quantized weights and the steps stop learning)."""
        for layer, quantizer in quantized_convs(model):
            quantizer.switch_on(layer.weight.detach())
        if self.hparams["rebuild_optimizer"]:
            rebuild_optimizer(model, optimizer)
        else:
            self._freeze_as_code(model)

    @staticmethod
    def _freeze_as_code(model: nn.Module) -> None:
        for layer, quantizer in quantized_convs(model):
            layer.weight.requires_grad_(False)
            quantizer.step.requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state.get("steps_done", 0))
