"""Long-tailed training sets (profiles, totals and defaults: docs/datasets.md, "Long-tailed variants").

* ``cao_counts``: Cao et al. (LDAM-DRW) exponential profile n_i = int(n_max * (1/rho)^(i/(K-1))),
  label 0 = head. This is the harness default and reproduces the published CIFAR-10/100-LT totals exactly.
* ``climbq_counts``: ClimbQ's iterative profile n_i = min(int(n_{i-1} * rho^(-1/(K-1))), available_i), kept
  only to reproduce ClimbQ's numbers (its CIFAR-100-LT rho >= 50 has empty classes).

Images per class are chosen by a local seeded generator (LDAM-DRW reseeds the *global* NumPy RNG instead).
"""
from __future__ import annotations

from benchmarks.data.base import DomainSplits
from benchmarks.data.splits import per_class_subset

PROFILES = ("cao", "climbq")


def cao_counts(n_max: int, num_classes: int, rho: float) -> list[int]:
    """Cao et al.: ``img_max * (imb_factor ** (i / (K - 1)))`` with ``imb_factor = 1/rho``, truncated."""
    if num_classes == 1:
        return [int(n_max)]
    imb_factor = 1.0 / rho
    return [int(n_max * (imb_factor ** (i / (num_classes - 1.0)))) for i in range(num_classes)]


def climbq_counts(n_max: int, num_classes: int, rho: float, available: list[int] | None = None) -> list[int]:
    """ClimbQ: each class is the previous (already truncated) count times rho^(-1/(K-1)), truncated again."""
    available = available or [n_max] * num_classes
    step = rho ** (-1.0 / max(num_classes - 1, 1))
    counts = [min(int(n_max), available[0])]
    for i in range(1, num_classes):
        counts.append(min(int(counts[-1] * step), available[i]))
    return counts


def long_tail_counts(profile: str, n_max: int, num_classes: int, rho: float,
                     available: list[int] | None = None) -> list[int]:
    if profile == "cao":
        return cao_counts(n_max, num_classes, rho)
    if profile == "climbq":
        return climbq_counts(n_max, num_classes, rho, available)
    raise ValueError(f"unknown long-tail profile '{profile}'; valid: {', '.join(PROFILES)}")


def make_long_tailed(splits: DomainSplits, num_classes: int, rho: float, *, profile: str = "cao",
                     seed: int = 0, n_max: int | None = None, test_per_class: int | None = None,
                     name: str | None = None) -> DomainSplits:
    """Subsample the training split to the long-tail profile; keep the test split balanced.

    ``n_max`` defaults to the smallest class of the training split (= 5000 for CIFAR-10, 500 for CIFAR-100),
    so every class can supply its count. ``test_per_class`` cuts the test split to a fixed balanced size
    (SynDigits-LT, as in ClimbQ: 200 per class); ``None`` keeps the whole (already balanced) test split.
    """
    available = splits.train.class_counts(num_classes)
    n_max = n_max or min(available)
    counts = long_tail_counts(profile, n_max, num_classes, rho, available)
    short = [c for c, (want, have) in enumerate(zip(counts, available)) if want > have]
    if short:
        raise ValueError(f"{splits.name}: classes {short} have fewer images than the long-tail profile needs "
                         f"(need {[counts[c] for c in short]}, have {[available[c] for c in short]})")
    train = per_class_subset(splits.train, counts, seed)
    test = splits.test
    if test_per_class is not None:
        # The test set is a fixed balanced subset, independent of the run seed (seed 0),
        # as a benchmark should be.
        test = per_class_subset(test, [test_per_class] * num_classes, 0)
    return DomainSplits(name or splits.name, train, test)
