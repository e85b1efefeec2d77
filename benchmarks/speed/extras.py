"""The speed benchmark's two sections besides the methods: the input pipeline alone (images/s) and the
fixed per-run overhead of the harness (start-up, records, checkpoints) against a quick run's training time."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.data.base import ImageTensors
from benchmarks.run.spec import Recipe
from benchmarks.speed.measure import sync_device
from benchmarks.speed.setup import CIFAR_MEAN, CIFAR_STD, REPO, Options, augmented_batches, synthetic_split

SYNTH_DATASET = "speed-synth"


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
                return sum(x.shape[0] for x, _ in augmented_batches(data, opts, device))

            epoch()  # warm-up
            runs = []
            for _ in range(3):
                sync_device(device)
                t0 = time.perf_counter()
                count = epoch()
                sync_device(device)
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
                "benchmarks.speed.extras:_load_synthetic",
                augment="crop_flip",
            )
        )


def bench_overhead(opts: Options, device: torch.device, steps: int, epochs: int = 2) -> list[dict[str, Any]]:
    """Fixed per-run cost of the harness: interpreter + imports, and a quick ``train.run`` against its
    training time (``result.json`` timings: wall_s from the run's start, train_s, eval_s)."""
    from benchmarks.run.spec import RunSpec, TaskSpec
    from benchmarks.run.trainer import run

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import benchmarks.run.trainer, methods.builtin"],
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
            "note": "python -c 'import benchmarks.run.trainer, methods.builtin'",
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
    assert result is not None  # run() returns None only when max_epochs stops it early
    timings = result.timings
    train_s, eval_s, wall_s = timings.train_s or 0.0, timings.eval_s or 0.0, timings.wall_s or 0.0
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
