"""What the speed benchmark times: a method set up as a real run sets it up, its training and evaluation step,
the peer torch.ao fake-quant model, the reference (pre-fusion) kernels, and the pre-generated batches."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.cli.args import parse_hparams
from benchmarks.data.base import ImageTensors
from benchmarks.data.batches import iterate_batches
from benchmarks.models import build_model
from benchmarks.run.compile_step import CompilePlan, compile_features, plan_compile
from benchmarks.run.spec import Recipe
from benchmarks.run.trainer_parts import TaskModel, amp_context, make_loss_fn, make_optimizer
from methods import (
    BatchContext,
    DomainBatch,
    QuantMethod,
    calibrate,
    get_method,
    prepare,
)

REPO = Path(__file__).resolve().parents[2]
PEER = "torch.ao-fakequant"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
REFERENCE = "@reference"
# The speed work replaced these composites of autograd ops by fused, bit-identical kernels; "NAME@reference"
# runs a method with the composites swapped back in (only around its own steps), for before/after timings.
REFERENCE_KERNELS = {
    "methods.lsq": {"lsq_quantize": "lsq_quantize_reference"},
    "methods.dorefa": {
        "dorefa_activation": "dorefa_activation_reference",
        "quantize_unit": "methods.quant:quantize_unit_reference",
    },
    "methods.quant": {"quantize_unit": "quantize_unit_reference"},
    "methods.cdf": {
        "normal_cdf": "methods.quant:normal_cdf_reference",
        "cdf_grid": "methods.quant:cdf_grid_reference",
    },
    "methods.emaq_core": {"batch_standardize": "methods.quant:batch_standardize_reference"},
}


# ------------------------------------------------------------------------------------------------ configs
@dataclass
class Options:
    arch: str = "resnet20"
    num_classes: int = 10
    input_size: int = 32
    w_bits: int = 4
    a_bits: int = 4
    batch_size: int = 128
    steps: int = 20
    warmup: int = 5
    block: int = 1
    pool: int = 4
    device: str = "auto"
    channels_last: bool = True
    amp: str = "none"
    compile: bool = False
    cuda_graphs: bool = True  # with compile on CUDA: mode reduce-overhead where the method allows it
    seed: int = 0
    lr: float = 0.01


@dataclass
class Setup:
    """One model ready to step: what a real run holds after prepare/calibrate/make_optimizer."""

    label: str
    model: TaskModel
    method: QuantMethod | None  # None: the torch.ao peer (plain cross-entropy step)
    optimizer: torch.optim.Optimizer
    context: BatchContext
    loss_fn: Callable[[DomainBatch], torch.Tensor]
    tally: dict[str, Any] = field(default_factory=dict)
    reference: bool = False  # run with the pre-speed-work composites (REFERENCE_KERNELS)
    plan: CompilePlan | None = None  # how it was compiled (None: eager)


@contextlib.contextmanager
def reference_kernels(active: bool):
    """Swap the pre-speed-work composites back in (``REFERENCE_KERNELS``) while active."""
    if not active:
        yield
        return
    import importlib

    swaps = []
    for module_name, names in REFERENCE_KERNELS.items():
        module = importlib.import_module(module_name)
        for name, ref in names.items():
            ref_module, _, ref_name = ref.rpartition(":")
            source = importlib.import_module(ref_module) if ref_module else module
            if not hasattr(source, ref_name):
                raise RuntimeError(
                    f"{source.__name__}.{ref_name} is missing: this checkout has no fused kernels, "
                    "so NAME@reference would time the same code as NAME"
                )
            swaps.append((module, name, getattr(source, ref_name)))
    saved = []
    for module, name, ref in swaps:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, ref)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def parse_method_spec(text: str) -> tuple[str, dict[str, Any]]:
    """'alignq' or 'alignq:admm=False:mu=0.1' -> (name, hparams); a '@reference' suffix is dropped."""
    text = text.removesuffix(REFERENCE)
    if text == PEER:
        return text, {}
    name, *items = text.split(":")
    return name.strip(), parse_hparams([item for item in items if item])


def _peer_loss_fn(model: TaskModel, device: torch.device, amp: str, tally: dict[str, Any]):
    def loss_fn(part: DomainBatch) -> torch.Tensor:
        with amp_context(device, amp):
            logits = model.net.classify(model.net.features(part.x))
            loss = F.cross_entropy(logits, part.y)
            tally["correct"] += (logits.argmax(1) == part.y).sum()
            tally["seen"] += part.y.numel()
            return loss

    return loss_fn


def build_setup(spec: str, opts: Options, device: torch.device, calib_x: torch.Tensor) -> Setup:
    """A model for ``spec`` (a registered method, optionally NAME:KEY=VALUE, or the peer), as a run builds
    it."""
    torch.manual_seed(opts.seed)
    net = build_model(
        opts.arch, opts.num_classes, in_channels=3, input_size=(opts.input_size, opts.input_size)
    )
    recipe = Recipe(epochs=1, batch_size=opts.batch_size, lr=opts.lr, amp=opts.amp)
    tally: dict[str, Any] = {"correct": torch.zeros((), device=device), "seen": 0, "grl": 0.0}
    context = BatchContext(
        class_prior=torch.full((opts.num_classes,), 1.0 / opts.num_classes, device=device), num_domains=1
    )
    context.class_counts = torch.full((opts.num_classes,), 5000.0, device=device)
    if spec.removesuffix(REFERENCE) == PEER:
        from benchmarks.speed.peer_fakequant import prepare_peer

        prepare_peer(net, bits=opts.w_bits)
        model = TaskModel(net).to(device)
        method = None
    else:
        name, hparams = parse_method_spec(spec)
        method = get_method(name, **hparams)
        model = TaskModel(net).to(device)
        w_bits, a_bits = (32, 32) if not method.quantizes else (opts.w_bits, opts.a_bits)
        prepare(model.net, method, w_bits, a_bits, None, context)
        model.to(device)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if method is not None:
        calibrate(model.net, calib_x)
    model.train()
    optimizer = make_optimizer(model, recipe)
    plan = None
    if opts.compile:  # as a compiled run: features() and classify(), CUDA graphs where the method allows
        plan = plan_compile(model.net, device, cuda_graphs=opts.cuda_graphs)
        compile_features(model.net, plan, opts.batch_size)
    loss_fn = (
        make_loss_fn(model, method, context, device, opts.amp, tally)
        if method is not None
        else _peer_loss_fn(model, device, opts.amp, tally)
    )
    return Setup(spec, model, method, optimizer, context, loss_fn, tally, spec.endswith(REFERENCE), plan)


# ------------------------------------------------------------------------------------------------ stepping
def train_step(setup: Setup, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    parts = [DomainBatch(x, y, 0)]
    if setup.method is None:
        opt = setup.optimizer
        opt.zero_grad(set_to_none=True)
        loss = setup.loss_fn(parts[0])
        loss.backward()
        opt.step()
        return loss.detach()
    with reference_kernels(setup.reference):
        return setup.method.training_step(setup.model, setup.optimizer, parts, setup.loss_fn)


def eval_step(setup: Setup, x: torch.Tensor, amp: str, device: torch.device) -> torch.Tensor:
    """What ``train._logits`` does per batch, in inference mode (the caller put the model in eval mode)."""
    with torch.inference_mode(), amp_context(device, amp), reference_kernels(setup.reference):
        if setup.method is None:
            return setup.model.net(x)
        setup.context.set_batch(None, 0)
        return setup.method.predict(setup.model.net(x), setup.context)


# ------------------------------------------------------------------------------------------------ data
def synthetic_split(n: int, opts: Options, seed: int = 0) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, opts.input_size, opts.input_size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % opts.num_classes
    return ImageTensors(images, labels[torch.randperm(n, generator=g)])


def augmented_batches(split: ImageTensors, opts: Options, device: torch.device):
    """The real input path (``iterate_batches``: crop+flip, normalisation, channels_last) over ``split``."""
    return iterate_batches(split, opts.batch_size, mean=CIFAR_MEAN, std=CIFAR_STD, augment="crop_flip",
                           generator=torch.Generator().manual_seed(opts.seed), device=device,
                           channels_last=opts.channels_last)


def batch_pool(opts: Options, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``pool`` augmented, normalised batches, generated once by the real input path and kept on the
    device."""
    split = synthetic_split(opts.batch_size * opts.pool, opts, opts.seed)
    return list(augmented_batches(split, opts, device))
