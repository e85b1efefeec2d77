"""A rough GPU-hour estimate for ``run_matrix.py --dry-run``, from nominal training-set sizes and assumed
training throughputs. The throughputs are assumptions for one modern data-centre GPU at fp32 and are printed
as such; docs/speed.md has measured numbers to replace them with."""
from __future__ import annotations

from benchmarks.data.longtail import long_tail_counts
from benchmarks.data.registry import get_spec, parse_name
from benchmarks.spec import RunSpec

# Training-split sizes of the datasets as distributed (before our validation split).
NOMINAL_TRAIN_IMAGES = {
    "mnist": 60000, "mnistm": 59001, "mnistm-synth": 60000, "svhn": 73257, "usps": 7291, "optdigits": 3823,
    "syndigits": 479400, "syndigits-synth": 20000, "cifar10": 50000, "cifar100": 50000,
    "office31/amazon": 2817, "office31/dslr": 498, "office31/webcam": 795,
}
# Assumed training images per second on one GPU (fp32); QAT methods are assumed 1.5x slower.
ASSUMED_IMAGES_PER_S = {"dann_digits": 40000, "resnet20": 20000, "resnet32": 13000, "resnet56": 7500,
                        "mobilenetv2_cifar": 6000, "resnet18": 2500, "resnet50": 800}
QAT_SLOWDOWN = 1.5
EVAL_OVERHEAD = 1.1


def train_images(dataset: str, val_fraction: float) -> int:
    base, lt = parse_name(dataset)
    n = NOMINAL_TRAIN_IMAGES.get(base, 50000)
    if lt is not None:
        spec = get_spec(base)
        k = spec.info.num_classes
        n = sum(long_tail_counts("cao", spec.lt_n_max or n // k, k, lt.rho))
    return int(n * (1 - val_fraction))


def gpu_hours(spec: RunSpec) -> float:
    """Estimated GPU-hours of one run (its FP parent counted separately)."""
    images = train_images(spec.task.dataset, spec.task.val_fraction)
    steps = images // spec.recipe.batch_size
    if spec.recipe.steps_per_epoch:
        steps = min(steps, spec.recipe.steps_per_epoch)
    per_s = ASSUMED_IMAGES_PER_S.get(spec.arch, 5000) / (1.0 if spec.method == "fp" else QAT_SLOWDOWN)
    if spec.task.protocol == "dann":
        per_s /= 2  # a target batch per source batch
    return spec.recipe.epochs * steps * spec.recipe.batch_size / per_s * EVAL_OVERHEAD / 3600
