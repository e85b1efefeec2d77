"""A rough GPU-hour estimate for ``run_matrix.py --dry-run``, from nominal training-set sizes, assumed FP
training throughputs per architecture, and each method's measured training-step time relative to FP.

The FP throughputs are assumptions for one modern data-centre GPU at fp32 and are printed as such. The
per-method ratios were measured (``benchmarks/bench_speed.py``, docs/speed.md: ResNet-20 W4/A4, batch 128,
fp32, an H100, 2026-11-23, before the fused kernels and the removal of host synchronisation). At that size
every method was host-bound, so for larger models, where the GPU is the bottleneck, they overstate the cost:
read the estimate as an upper bound for quantized runs."""
from __future__ import annotations

from benchmarks.data.longtail import long_tail_counts
from benchmarks.data.registry import get_spec, parse_name
from benchmarks.run.spec import RunSpec

# Training-split sizes of the datasets as distributed (before our validation split).
NOMINAL_TRAIN_IMAGES = {
    "mnist": 60000, "mnistm": 59001, "mnistm-synth": 60000, "svhn": 73257, "usps": 7291, "optdigits": 3823,
    "syndigits": 479400, "syndigits-synth": 20000, "cifar10": 50000, "cifar100": 50000,
    "office31/amazon": 2817, "office31/dslr": 498, "office31/webcam": 795,
}
# Assumed FP training images per second on one GPU (fp32); ResNet-20 measured 16,842 (H100, docs/speed.md).
ASSUMED_IMAGES_PER_S = {"dann_digits": 40000, "resnet20": 17000, "resnet32": 13000, "resnet56": 7500,
                        "mobilenetv2_cifar": 6000, "resnet18": 2500, "resnet50": 800}
# Measured training step / FP training step (H100, fp32, ResNet-20 W4/A4; see the module docstring).
MEASURED_STEP_RATIO = {"fp": 1.0, "lsq": 3.40, "dorefa": 3.84, "alignq": 12.44, "climbq": 3.99, "emaq": 7.30,
                       "emaq-lt": 7.43}
UNMEASURED_STEP_RATIO = max(MEASURED_STEP_RATIO.values())  # a method added later: the most expensive one
EVAL_OVERHEAD = 1.1


def train_images(dataset: str, val_fraction: float) -> int:
    base, lt = parse_name(dataset)
    n = NOMINAL_TRAIN_IMAGES.get(base, 50000)
    if lt is not None:
        spec = get_spec(base)
        k = spec.info.num_classes
        n = sum(long_tail_counts("cao", spec.lt_n_max or n // k, k, lt.rho))
    return int(n * (1 - val_fraction))


def step_ratio(spec: RunSpec) -> float:
    """A training step of ``spec``'s method relative to FP, as measured with the method's default options
    (AlignQ with ADMM off is cheaper than this; it has no GPU measurement of its own)."""
    return MEASURED_STEP_RATIO.get(spec.method, UNMEASURED_STEP_RATIO)


def gpu_hours(spec: RunSpec) -> float:
    """Estimated GPU-hours of one run (its FP parent counted separately)."""
    images = train_images(spec.task.dataset, spec.task.val_fraction)
    steps = images // spec.recipe.batch_size
    if spec.recipe.steps_per_epoch:
        steps = min(steps, spec.recipe.steps_per_epoch)
    per_s = ASSUMED_IMAGES_PER_S.get(spec.arch, 5000) / step_ratio(spec)
    if spec.task.protocol == "dann":
        per_s /= 2  # a target batch per source batch
    return spec.recipe.epochs * steps * spec.recipe.batch_size / per_s * EVAL_OVERHEAD / 3600
