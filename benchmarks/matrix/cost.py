"""A rough GPU-hour estimate for ``run_matrix.py --dry-run``, from nominal training-set sizes, assumed FP
training throughputs per architecture, and each method's measured training-step time relative to FP.

The FP throughputs are assumptions for one modern data-centre GPU at fp32 and are printed as such. The
per-method ratios are data, not code: ``measured_ratios.json`` beside this file holds them with the date,
device and command that measured them (``benchmarks/bench_speed.py``); ``$QBENCH_COST_RATIOS`` names another
file. The dry run prints where its ratios came from.

Two more records in that file adjust the estimate (issue 18), each with its own date, device and command:
a ``compiled_*`` record (the compiled step's speed-up over eager, per method; ``compiled_cuda`` when
measured on a GPU, else ``compiled_cpu``) for runs whose recipe has ``compile: true``, and a ``packing_cuda``
record (aggregate images/s of N concurrent runs over one alone, ``bench_speed.py --packed N``) dividing
GPU-hours when ``runs_per_gpu`` > 1. Without such a record nothing is assumed, and the dry run says so. A
``packing_cpu`` record is shown, never applied: on a CPU the gain measures how N one-thread processes fare
against one multi-threaded process on shared cores (on a loaded VM it swung 2.9-13.5x between repeats),
which says nothing about N runs sharing a GPU."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.data.longtail import long_tail_counts
from benchmarks.data.registry import get_spec, parse_name
from benchmarks.run.spec import RunSpec
from benchmarks.run.tta_spec import TtaSpec
from methods import get_method, method_class

# Training-split sizes of the datasets as distributed (before our validation split).
NOMINAL_TRAIN_IMAGES = {
    "mnist": 60000, "mnistm": 59001, "mnistm-synth": 60000, "svhn": 73257, "usps": 7291, "optdigits": 3823,
    "syndigits": 479400, "syndigits-synth": 20000, "cifar10": 50000, "cifar100": 50000,
    "imagenet": 1281167, "office31/amazon": 2817, "office31/dslr": 498, "office31/webcam": 795,
}
# Assumed FP training images per second on one GPU (fp32); ResNet-20 measured 16,842 (H100, docs/speed.md).
ASSUMED_IMAGES_PER_S = {"dann_digits": 40000, "resnet20": 17000, "resnet32": 13000, "resnet56": 7500,
                        "mobilenetv2_cifar": 6000, "resnet18": 2500, "resnet50": 800}
EVAL_OVERHEAD = 1.1
DEFAULT_RATIOS = Path(__file__).resolve().parent / "measured_ratios.json"


def ratios_path() -> Path:
    return Path(os.environ.get("QBENCH_COST_RATIOS") or DEFAULT_RATIOS)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    ratios = data.get("step_ratio_vs_fp")
    if not isinstance(ratios, dict) or not ratios or not all(
            isinstance(v, (int, float)) and v > 0 for v in ratios.values()):
        raise ValueError(f"{path}: 'step_ratio_vs_fp' must map methods to positive numbers")
    return data


def measurement() -> dict[str, Any]:
    """The measured-ratios record in force (``date``, ``device``, ``command``, ``step_ratio_vs_fp``...)."""
    path = ratios_path()
    return _load(str(path), path.stat().st_mtime)


def measured_step_ratios() -> dict[str, float]:
    return dict(measurement()["step_ratio_vs_fp"])


def source_line() -> str:
    """Where the ratios come from, for the dry run's output."""
    m = measurement()
    return (f"QAT step x FP measured {m.get('date')} on {m.get('device')} ({m.get('arch')} {m.get('bits')}, "
            f"batch {m.get('batch_size')}; {ratios_path().name})")


# Device-specific (GPU) records first: the step ratios above are GPU measurements.
COMPILED_KEYS = ("compiled_cuda", "compiled_cpu")
PACKING_KEYS = ("packing_cuda",)  # applied; the CPU record is only named (see the module's docstring)
PACKING_SHOWN = ("packing_cpu",)


def _record(keys: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    m = measurement()
    return next(((key, m[key]) for key in keys if isinstance(m.get(key), dict)), None)


def compile_speedup(method: str) -> float:
    """Eager step time over compiled step time of ``method`` (1: no record, or the method not in it)."""
    found = _record(COMPILED_KEYS)
    return float(found[1].get("eager_over_compiled", {}).get(method, 1.0)) if found else 1.0


def packing_gain(runs_per_gpu: int) -> float:
    """Aggregate throughput of a pack over one run alone (1: no packing, or no packing record)."""
    found = _record(PACKING_KEYS)
    if runs_per_gpu <= 1 or found is None:
        return 1.0
    return float(found[1]["aggregate_over_single"])


def adjustments_line(compiled: bool, runs_per_gpu: int) -> str:
    """Which compiled and packing records the estimate used (or that none was), for the dry run."""
    parts = []
    if compiled:
        found = _record(COMPILED_KEYS)
        parts.append(f"compile: true runs use {found[0]} (eager/compiled per method) measured "
                     f"{found[1].get('date')} on {found[1].get('device')}" if found else
                     "compile: true runs: no compiled record, eager cost assumed")
    if runs_per_gpu > 1:
        found = _record(PACKING_KEYS)
        parts.append(f"runs_per_gpu {runs_per_gpu}: GPU-hours / {found[1]['aggregate_over_single']:.2f}, "
                     f"the packing gain of {found[1].get('runs')} runs in {found[0]} measured "
                     f"{found[1].get('date')} on {found[1].get('device')}" if found else
                     f"runs_per_gpu {runs_per_gpu}: no GPU packing record, no gain assumed"
                     + _shown_only())
    return "; ".join(parts)


def _shown_only() -> str:
    found = _record(PACKING_SHOWN)
    return (f" ({found[0]}, {found[1].get('aggregate_over_single')}x measured {found[1].get('date')} on "
            f"{found[1].get('device')}, is not applied to GPU-hours)" if found else "")


def train_images(dataset: str, val_fraction: float) -> int:
    base, lt = parse_name(dataset)
    n = NOMINAL_TRAIN_IMAGES.get(base, 50000)
    if lt is not None:
        spec = get_spec(base)
        k = spec.info.num_classes
        n = sum(long_tail_counts("cao", spec.lt_n_max or n // k, k, lt.rho))
    return int(n * (1 - val_fraction))


def step_ratio(spec: RunSpec) -> float:
    """A training step of ``spec``'s method relative to eager FP, as measured with the method's default
    options (AlignQ with ADMM off is cheaper than this; it has no GPU measurement of its own); a compiled
    run's step is divided by the measured compile speed-up of its method."""
    ratios = measured_step_ratios()
    ratio = ratios.get(spec.method, max(ratios.values()))  # a method not measured yet: the costliest one
    return ratio / compile_speedup(spec.method) if spec.recipe.compile else ratio


def ptq_gpu_hours(spec: RunSpec) -> float:
    """A post-training run: each reconstruction iteration runs one unit forward and backward on a batch, so
    a pass over all units costs about as many full-network training steps as one unit has iterations
    (assumption: the units split the network's cost); the stages come from the method itself."""
    method = get_method(spec.method, **spec.hparams)
    images = sum(stage.iters * stage.batch_size for stage in getattr(method, "stages")())
    return images / ASSUMED_IMAGES_PER_S.get(spec.arch, 5000) * EVAL_OVERHEAD / 3600


def gpu_hours(spec: RunSpec | TtaSpec, runs_per_gpu: int = 1) -> float:
    """Estimated GPU-hours of one run (its FP parent counted separately); packed ``runs_per_gpu`` to a GPU,
    its share of the GPU's hours (divided by the measured packing gain)."""
    return _alone_gpu_hours(spec) / packing_gain(runs_per_gpu)


def _alone_gpu_hours(spec: RunSpec | TtaSpec) -> float:
    if isinstance(spec, TtaSpec):
        return tta_gpu_hours(spec)
    if method_class(spec.method).kind == "ptq":
        return ptq_gpu_hours(spec)
    images = train_images(spec.task.dataset, spec.task.val_fraction)
    steps = images // spec.recipe.batch_size
    if spec.recipe.steps_per_epoch:
        steps = min(steps, spec.recipe.steps_per_epoch)
    per_s = ASSUMED_IMAGES_PER_S.get(spec.arch, 5000) / step_ratio(spec)
    if spec.task.protocol == "dann":
        per_s /= 2  # a target batch per source batch
    return spec.recipe.epochs * steps * images_per_step(spec) / per_s * EVAL_OVERHEAD / 3600


def images_per_step(spec: RunSpec) -> int:
    """The recipe's batch, once per training domain on a domain-generalization suite (DomainBed's batch is per
    domain)."""
    from benchmarks.data.domaingen import get_suite, held_out_domains, is_suite

    if not is_suite(spec.task.dataset):
        return spec.recipe.batch_size
    suite = get_suite(spec.task.dataset)
    return spec.recipe.batch_size * (len(suite.domains) - len(held_out_domains(suite, spec.task.target)))


RELEASED_STREAM_IMAGES = {"cifar10-c": 10000, "cifar100-c": 10000, "imagenet-c": 50000}
NOMINAL_TEST_IMAGES = 10000


def tta_gpu_hours(spec: TtaSpec) -> float:
    """A TTA run streams each corruption's images once, with the method's forward-pass cost per image (a
    backward pass counts as two forwards)."""
    from methods.tta.base import tta_class

    stream = spec.stream
    per = stream.size or RELEASED_STREAM_IMAGES.get(stream.source, NOMINAL_TEST_IMAGES)
    images = per * len(stream.corruptions) * tta_class(spec.method).forward_passes
    return images / ASSUMED_IMAGES_PER_S.get(spec.arch, 5000) / 3600
