#!/usr/bin/env python
"""Speed of every method's training and evaluation step, against the full-precision step (issue #8).

For a chosen architecture, W/A bits and batch size, each method is set up exactly as a real run sets it up
(``build_model`` → ``TaskModel`` → ``prepare`` → ``calibrate`` → ``make_optimizer``) and its *own*
``method.training_step(model, optimizer, parts, loss_fn)`` is timed, interleaved with the FP step measured in
the same process on the same pre-generated batches (held on the device). Reported per method: median
training-step and evaluation-step time (evaluation in inference mode), the ratio of each to the FP step,
images/s and the peak memory of a step. Besides the methods: torch.ao's eager fake-quant QAT of the same model
as a peer reference (``benchmarks/peer_fakequant.py``), the input pipeline alone (``iterate_batches`` with
crop+flip augmentation, images/s), and the fixed per-run overhead of the harness (interpreter start-up, a
quick ``benchmarks.train.run`` end to end against its training time).

Examples:
  python benchmarks/bench_speed.py                                   # ResNet-20, W4/A4, batch 128, CPU/GPU auto
  python benchmarks/bench_speed.py --methods fp,lsq,dorefa --steps 40 --profile 8
  python benchmarks/bench_speed.py --methods alignq,alignq:admm=False     # a method variant: NAME:KEY=VALUE[:KEY=VALUE]
  python benchmarks/bench_speed.py --methods lsq,lsq@reference           # fused kernels vs the composites they replaced
  python benchmarks/bench_speed.py --device cuda --amp bf16 --compile --steps 200 --block 10
Output: a Markdown table on stdout and a CSV (``--out``, default reports/speed.csv). No numbers are asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from benchmarks.cli_common import fail, parse_bits, parse_hparams
from benchmarks.data.base import ImageTensors
from benchmarks.data.batches import iterate_batches
from benchmarks.models import build_model
from benchmarks.spec import Recipe
from benchmarks.trainer_parts import TaskModel, amp_context, make_loss_fn, make_optimizer, pick_device
from methods import (
    BatchContext,
    DomainBatch,
    QuantMethod,
    available_methods,
    calibrate,
    get_method,
    prepare,
)

REPO = Path(__file__).resolve().parents[1]
PEER = "torch.ao-fakequant"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SYNTH_DATASET = "speed-synth"
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
}
CSV_FIELDS = [
    "section",
    "device",
    "arch",
    "bits",
    "batch_size",
    "amp",
    "channels_last",
    "compile",
    "method",
    "train_ms",
    "fp_train_ms",
    "train_ratio",
    "train_img_s",
    "eval_ms",
    "fp_eval_ms",
    "eval_ratio",
    "eval_img_s",
    "peak_mb",
    "fp_peak_mb",
    "memory_kind",
    "steps",
    "value",
    "unit",
    "note",
    "error",
]


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
    """A model for ``spec`` (a registered method, optionally NAME:KEY=VALUE, or the peer), as a run builds it."""
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
        from benchmarks.peer_fakequant import prepare_peer

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
    if opts.compile:
        model.net.features = torch.compile(model.net.features)  # features() is what training and eval call
    loss_fn = (
        make_loss_fn(model, method, context, device, opts.amp, tally)
        if method is not None
        else _peer_loss_fn(model, device, opts.amp, tally)
    )
    return Setup(spec, model, method, optimizer, context, loss_fn, tally, spec.endswith(REFERENCE))


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(fn: Callable[[int], Any], start: int, count: int, device: torch.device) -> float:
    """Seconds for ``count`` consecutive calls; the device is synchronised only at the block's edges."""
    _sync(device)
    t0 = time.perf_counter()
    for i in range(count):
        fn(start + i)
    _sync(device)
    return time.perf_counter() - t0


def interleaved(
    fns: dict[str, Callable[[int], Any]], blocks: int, block: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Per-step seconds of each function: warm-up, then ``blocks`` rounds, the order alternating each round."""
    names = list(fns)
    for name in names:
        time_block(fns[name], 0, warmup, device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(blocks):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_block(fns[name], warmup + r * block, block, device) / block)
    return times


def paired_ratio(method: list[float], fp: list[float]) -> float:
    """Median over rounds of method/FP, each pair measured back to back (robust to load drift)."""
    return statistics.median(m / f for m, f in zip(method, fp))


def step_memory(setup: Setup, batches, device: torch.device, steps: int = 2) -> float | None:
    """CUDA: peak bytes allocated during training steps above what was allocated before them (MiB)."""
    if device.type != "cuda":
        return None
    setup.model.train()
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps):
        x, y = batches[i % len(batches)]
        train_step(setup, x, y)
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


# ------------------------------------------------------------------------------------------------ data
def synthetic_split(n: int, opts: Options, seed: int = 0) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, opts.input_size, opts.input_size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % opts.num_classes
    return ImageTensors(images, labels[torch.randperm(n, generator=g)])


def batch_pool(opts: Options, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``pool`` augmented, normalised batches, generated once by the real input path and kept on the device."""
    split = synthetic_split(opts.batch_size * opts.pool, opts, opts.seed)
    g = torch.Generator().manual_seed(opts.seed)
    return list(
        iterate_batches(
            split,
            opts.batch_size,
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            augment="crop_flip",
            generator=g,
            device=device,
            channels_last=opts.channels_last,
        )
    )


def bench_pipeline(opts: Options, device: torch.device, images: int = 20_000) -> list[dict[str, Any]]:
    """``iterate_batches`` alone (uint8 host tensors → augmented, normalised batches on the device)."""
    n = max(images, opts.batch_size)
    split = synthetic_split(n, opts, opts.seed + 1)
    rows = []
    variants = [("host-held uint8 split", split)]
    if device.type == "cuda":
        variants.append(
            ("device-held uint8 split", ImageTensors(split.images.to(device), split.labels.to(device)))
        )
    for note, data in variants:
        try:

            def epoch(data=data):
                g = torch.Generator().manual_seed(opts.seed)
                count = 0
                for x, _ in iterate_batches(
                    data,
                    opts.batch_size,
                    mean=CIFAR_MEAN,
                    std=CIFAR_STD,
                    augment="crop_flip",
                    generator=g,
                    device=device,
                    channels_last=opts.channels_last,
                ):
                    count += x.shape[0]
                return count

            epoch()  # warm-up
            runs = []
            for _ in range(3):
                _sync(device)
                t0 = time.perf_counter()
                count = epoch()
                _sync(device)
                runs.append(count / (time.perf_counter() - t0))
            rows.append(
                {
                    "section": "pipeline",
                    "method": "iterate_batches crop_flip",
                    "value": statistics.median(runs),
                    "unit": "images/s",
                    "note": note,
                }
            )
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            rows.append(
                {
                    "section": "pipeline",
                    "method": "iterate_batches crop_flip",
                    "note": note,
                    "error": f"{type(err).__name__}: {err}",
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------ overhead
def _load_synthetic(root, *, download=False, verify_md5=True, size=(32, 32), n_train=2560, n_test=512, **_):
    from benchmarks.data.base import DomainSplits

    opts = Options(input_size=int(size[0]))
    return DomainSplits(SYNTH_DATASET, synthetic_split(n_train, opts, 11), synthetic_split(n_test, opts, 12))


def _register_synthetic() -> None:
    from benchmarks.data import registry
    from benchmarks.data.base import DatasetInfo

    if SYNTH_DATASET not in registry.available_datasets():
        registry.register(
            registry.DatasetSpec(
                DatasetInfo(
                    SYNTH_DATASET,
                    10,
                    3,
                    (32, 32),
                    CIFAR_MEAN,
                    CIFAR_STD,
                    None,
                    "random uint8 CIFAR-size images (speed benchmark only)",
                ),
                "benchmarks.bench_speed:_load_synthetic",
                augment="crop_flip",
            )
        )


def bench_overhead(opts: Options, device: torch.device, steps: int, epochs: int = 2) -> list[dict[str, Any]]:
    """Fixed per-run cost of the harness: interpreter + imports, and a quick ``train.run`` against its
    training time (``result.json`` timings: wall_s from the run's start, train_s, eval_s)."""
    from benchmarks.spec import RunSpec, TaskSpec
    from benchmarks.train import run

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import benchmarks.train, methods.builtin"],
        cwd=REPO,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    startup = time.perf_counter() - t0
    rows.append(
        {
            "section": "overhead",
            "method": "interpreter + imports",
            "value": startup,
            "unit": "s",
            "note": "python -c 'import benchmarks.train, methods.builtin'",
        }
    )
    _register_synthetic()
    recipe = Recipe(
        epochs=epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        schedule="constant",
        steps_per_epoch=steps,
        amp=opts.amp,
    )
    spec = RunSpec(task=TaskSpec(SYNTH_DATASET), arch=opts.arch, method="fp", recipe=recipe, seed=opts.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run(
            spec, Path(tmp), device=str(device), channels_last=opts.channels_last, log=lambda _: None
        )
        outer = time.perf_counter() - t0
    timings = result["timings"]
    train_s, eval_s, wall_s = timings["train_s"], timings["eval_s"], timings["wall_s"]
    fixed = outer - train_s - eval_s
    note = (
        f"quick run: FP {opts.arch}, {epochs} epochs x {steps} steps, batch {opts.batch_size}, "
        f"{SYNTH_DATASET} (2560 train / 256 val / 512 test)"
    )
    for label, value, unit in (
        ("run end to end", outer, "s"),
        ("run wall_s (result.json)", wall_s, "s"),
        ("training (train_s)", train_s, "s"),
        ("evaluation (eval_s)", eval_s, "s"),
        ("harness overhead (end to end - train - eval)", fixed, "s"),
        ("overhead / training time", fixed / train_s, "x"),
        ("(start-up + overhead) / training time", (startup + fixed) / train_s, "x"),
    ):
        rows.append({"section": "overhead", "method": label, "value": value, "unit": unit, "note": note})
    return rows


# ------------------------------------------------------------------------------------------------ memory (CPU)
def cpu_peak_rss_mb(spec: str, opts: Options) -> float | None:
    """Peak RSS growth of training steps in a fresh child process (peak RSS after 3 steps minus after setup).

    torch's CPU allocator keeps no peak statistics and peak RSS is a process-wide high-water mark, so each
    model is measured alone in its own process.
    """
    args = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-child",
        spec,
        "--arch",
        opts.arch,
        "--bits",
        f"{opts.w_bits}/{opts.a_bits}",
        "--batch-size",
        str(opts.batch_size),
        "--device",
        "cpu",
        "--num-classes",
        str(opts.num_classes),
        "--input-size",
        str(opts.input_size),
        "--channels-last" if opts.channels_last else "--no-channels-last",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)["peak_mb"]
    return None


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM on Linux (per address space, so not inherited across fork+exec as
    ru_maxrss is: a child of a large benchmark process would otherwise start at the parent's peak), else
    ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 if platform.system() == "Darwin" else 1.0  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024.0


def memory_child(spec: str, opts: Options) -> None:
    device = torch.device("cpu")
    batches = batch_pool(opts, device)
    setup = build_setup(spec, opts, device, batches[0][0])
    base = _peak_rss_mb()
    for i in range(3):
        train_step(setup, *batches[i % len(batches)])
    print(json.dumps({"peak_mb": _peak_rss_mb() - base}))


# ------------------------------------------------------------------------------------------------ profiling
def profile_top_ops(setup: Setup, batches, device: torch.device, top: int, steps: int = 3) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    setup.model.train()
    with profile(activities=activities) as prof:
        for i in range(steps):
            train_step(setup, *batches[i % len(batches)])
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)


# ------------------------------------------------------------------------------------------------ main bench
def bench_methods(
    specs: list[str],
    opts: Options,
    device: torch.device,
    memory: bool,
    profile: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    batches = batch_pool(opts, device)
    calib_x = batches[0][0]
    n = len(batches)
    blocks = max(1, math.ceil(opts.steps / opts.block))
    base = {
        "device": device_label(device),
        "arch": opts.arch,
        "bits": f"W{opts.w_bits}/A{opts.a_bits}",
        "batch_size": opts.batch_size,
        "amp": opts.amp,
        "channels_last": opts.channels_last,
        "compile": opts.compile,
        "steps": blocks * opts.block,
    }
    rows: list[dict[str, Any]] = []
    fp_memory: float | None = None
    for spec in specs:
        row = {**base, "section": "step", "method": spec}
        try:
            fp = build_setup("fp", opts, device, calib_x)
            other = build_setup(spec, opts, device, calib_x)
            setups = {"fp": fp, "method": other}

            def trainer(s: Setup):
                return lambda i: train_step(s, *batches[i % n])

            def evaluator(s: Setup):
                return lambda i: eval_step(s, batches[i % n][0], opts.amp, device)

            for s in setups.values():
                s.model.train()
            t = interleaved(
                {k: trainer(s) for k, s in setups.items()}, blocks, opts.block, opts.warmup, device
            )
            for s in setups.values():
                s.model.eval()
            e = interleaved(
                {k: evaluator(s) for k, s in setups.items()}, blocks, opts.block, opts.warmup, device
            )
            for s in setups.values():
                s.model.train()
            train_ms, fp_ms = 1e3 * statistics.median(t["method"]), 1e3 * statistics.median(t["fp"])
            eval_ms, fp_eval = 1e3 * statistics.median(e["method"]), 1e3 * statistics.median(e["fp"])
            row.update(
                train_ms=train_ms,
                fp_train_ms=fp_ms,
                train_ratio=paired_ratio(t["method"], t["fp"]),
                train_img_s=opts.batch_size / train_ms * 1e3,
                eval_ms=eval_ms,
                fp_eval_ms=fp_eval,
                eval_ratio=paired_ratio(e["method"], e["fp"]),
                eval_img_s=opts.batch_size / eval_ms * 1e3,
            )
            if memory:
                if device.type == "cuda":
                    row["peak_mb"], row["fp_peak_mb"] = (
                        step_memory(other, batches, device),
                        step_memory(fp, batches, device),
                    )
                    row["memory_kind"] = "cuda max_memory_allocated during a step minus allocated before it"
                else:
                    if fp_memory is None:
                        fp_memory = cpu_peak_rss_mb("fp", opts)
                    row["peak_mb"], row["fp_peak_mb"] = cpu_peak_rss_mb(spec, opts), fp_memory
                    row["memory_kind"] = (
                        "cpu peak-RSS (VmHWM) growth over 3 training steps, fresh process per model"
                    )
            if profile:
                log(
                    f"\n#### where the time goes: {spec} (top {profile} ops by self time, 3 training steps)\n"
                )
                log("```\n" + profile_top_ops(other, batches, device, profile) + "```")
            del fp, other, setups
        except Exception as err:  # noqa: BLE001 - one failing method must not sink the table
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        rows.append(row)
        log(
            f"  {spec}: "
            + (
                f"train {row['train_ratio']:.2f}x FP, eval {row['eval_ratio']:.2f}x FP"
                if "train_ratio" in row
                else f"error {row['error']}"
            )
        )
    return rows


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.machine()} x{torch.get_num_threads()} threads"


# ------------------------------------------------------------------------------------------------ output
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    steps = [r for r in rows if r["section"] == "step"]
    if steps:
        r0 = steps[0]
        out.append(
            f"### Step time vs FP — {r0['device']}, {r0['arch']} {r0['bits']}, batch {r0['batch_size']}, "
            f"amp={r0['amp']}, channels_last={r0['channels_last']}, compile={r0['compile']}, "
            f"{r0['steps']} timed steps\n"
        )
        out.append(
            "| method | train ms | FP train ms | train ×FP | train img/s | eval ms | FP eval ms | eval ×FP "
            "| eval img/s | step peak MiB (FP) |"
        )
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in steps:
            if r.get("error"):
                out.append(f"| {r['method']} | error: {r['error']} |" + " |" * 8)
                continue
            mem = "–" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f} ({_fmt(r.get('fp_peak_mb'), 0)})"
            out.append(
                f"| {r['method']} | {_fmt(r['train_ms'])} | {_fmt(r['fp_train_ms'])} | "
                f"**{_fmt(r['train_ratio'])}** | {_fmt(r['train_img_s'], 0)} | {_fmt(r['eval_ms'])} | "
                f"{_fmt(r['fp_eval_ms'])} | {_fmt(r['eval_ratio'])} | {_fmt(r['eval_img_s'], 0)} | {mem} |"
            )
        if steps[0].get("memory_kind"):
            out.append(f"\nMemory: {steps[0]['memory_kind']}.")
    other = [r for r in rows if r["section"] != "step"]
    if other:
        out.append("\n| section | what | value | unit | note |")
        out.append("| --- | --- | ---: | --- | --- |")
        for r in other:
            value = (
                f"error: {r['error']}"
                if r.get("error")
                else _fmt(r.get("value"), 3 if r.get("unit") != "images/s" else 0)
            )
            out.append(
                f"| {r['section']} | {r['method']} | {value} | {r.get('unit', '')} | {r.get('note', '')} |"
            )
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, default=32, help="square input side (CIFAR-size: 32)")
    p.add_argument("--bits", default="4/4", help="W/A bits of the quantized methods")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (train and eval each)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per model first")
    p.add_argument(
        "--block",
        type=int,
        default=None,
        help="consecutive steps per timed block (device synchronised only at block edges); "
        "default 1 on CPU, 10 on CUDA",
    )
    p.add_argument("--pool", type=int, default=4, help="pre-generated batches, cycled (same for every model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--methods",
        default="all",
        help=f"comma list of registered methods (NAME or NAME:KEY=VALUE:...), '{PEER}', or 'all' "
        "(every registered method + the peer); a '@reference' suffix runs a method with the "
        "composites the speed work replaced (before/after timings)",
    )
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--amp", default="none", choices=("none", "bf16"), help="bf16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile each model's features()")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak memory of a step (CPU: one child process per model)",
    )
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the input pipeline alone",
    )
    p.add_argument("--pipeline-images", type=int, default=20_000)
    p.add_argument(
        "--overhead",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time a quick benchmarks.train.run end to end against its training time",
    )
    p.add_argument(
        "--overhead-steps", type=int, default=10, help="steps per epoch of the quick run (2 epochs)"
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="K",
        help="print torch.profiler's top K ops per method (3 training steps)",
    )
    p.add_argument("--out", default="reports/speed.csv")
    p.add_argument("--markdown", default=None, help="also write the Markdown table here")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p


def expand_methods(text: str) -> list[str]:
    """'all' or a comma list of NAME[:KEY=VALUE[:KEY=VALUE...]] (registered methods or the peer)."""
    specs = (
        available_methods() + [PEER] if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    )
    known = set(available_methods()) | {PEER}
    for spec in specs:
        if parse_method_spec(spec)[0] not in known or (spec.endswith(REFERENCE) and spec.startswith(PEER)):
            raise ValueError(f"unknown method {spec!r}; valid: {', '.join(sorted(known))}")
    return specs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        w_bits, a_bits = parse_bits(args.bits)
        device = pick_device(args.device)
        specs = expand_methods(args.methods) if args.memory_child is None else [args.memory_child]
    except ValueError as err:
        return fail(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    block = args.block or (10 if device.type == "cuda" else 1)
    opts = Options(
        arch=args.arch,
        num_classes=args.num_classes,
        input_size=args.input_size,
        w_bits=w_bits,
        a_bits=a_bits,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        block=block,
        pool=args.pool,
        device=str(device),
        channels_last=args.channels_last,
        amp=args.amp,
        compile=args.compile,
        seed=args.seed,
    )
    if args.memory_child is not None:
        memory_child(args.memory_child, opts)
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    log = lambda text: print(text, file=sys.stderr, flush=True)
    log(
        f"bench_speed: {device_label(device)}, torch {torch.__version__}, {opts.arch} W{w_bits}/A{a_bits}, "
        f"batch {opts.batch_size}, methods {', '.join(specs)}"
    )
    rows = bench_methods(specs, opts, device, args.memory, args.profile, log)
    if args.pipeline:
        rows += bench_pipeline(opts, device, args.pipeline_images)
    if args.overhead:
        try:
            rows += bench_overhead(opts, device, args.overhead_steps)
        except Exception as err:  # noqa: BLE001
            rows.append(
                {"section": "overhead", "method": "quick run", "error": f"{type(err).__name__}: {err}"}
            )
    for r in rows:
        for key in ("device", "arch", "batch_size", "amp", "channels_last", "compile"):
            r.setdefault(
                key,
                {
                    "device": device_label(device),
                    "arch": opts.arch,
                    "batch_size": opts.batch_size,
                    "amp": opts.amp,
                    "channels_last": opts.channels_last,
                    "compile": opts.compile,
                }[key],
            )
    table = markdown(rows)
    print(table)
    write_csv(Path(args.out), rows)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
