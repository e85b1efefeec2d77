"""Statistics of one table cell and of two methods on the same seeds (numpy/scipy only).

Definitions (docs/analysis.md repeats them for readers of the tables):

- a cell's **interval** is the 95 % Student-t interval of the mean over seeds,
  ``mean ± t_{0.975, n-1} · sd / √n`` with the sample standard deviation (ddof = 1); ``se = sd / √n``.
  DomainBed prints ± SE with ddof = 0 instead; ours is wider, and says what it is. n = 1 has no interval.
- a **paired comparison** of method A with method B uses only the seeds both ran from the same FP parent
  (QAT runs of one task/arch/seed start from one FP checkpoint, so the seed-to-seed noise of the starting
  point cancels in A − B): the mean of the per-seed differences, its 95 % t-interval, the two-sided paired
  t-test p (``scipy.stats.ttest_rel``) and the two-sided Wilcoxon signed-rank p (``scipy.stats.wilcoxon``,
  exact for these small n; with 3 seeds its smallest possible p is 0.25, so it can never reject there).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one set of runs; spread fields are NaN below two runs."""

    n: int = 0
    mean: float = math.nan
    sd: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def contains(self, value: float) -> bool:
        return self.n > 1 and self.ci_low <= value <= self.ci_high


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student-t interval of the mean of ``values`` (NaNs if fewer than two)."""
    n = values.size
    if n < 2:
        return math.nan, math.nan
    mean, se = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return mean - t * se, mean + t * se


def summarize(values: np.ndarray | list[float], confidence: float = CONFIDENCE) -> Summary:
    """n, mean, sd (ddof 1), se and the t-interval of ``values`` (NaNs dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return Summary()
    if n == 1:
        return Summary(n=1, mean=float(x[0]))
    sd = float(x.std(ddof=1))
    low, high = t_interval(x, confidence)
    return Summary(n=n, mean=float(x.mean()), sd=sd, se=sd / math.sqrt(n), ci_low=low, ci_high=high)


@dataclass(frozen=True)
class Paired:
    """A − B over the seeds both ran from the same FP parent."""

    n: int = 0
    mean_diff: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    t_p: float = math.nan
    wilcoxon_p: float = math.nan

    @property
    def separated(self) -> bool:
        """The interval of the difference excludes 0 (equivalently: paired t-test p < 1 − confidence)."""
        return self.n > 1 and (self.ci_low > 0 or self.ci_high < 0)


def common_keys(a: Mapping, b: Mapping, parents_a: Mapping | None = None,
                parents_b: Mapping | None = None) -> list:
    """Seeds present in both, whose FP parents agree when both sides know them."""
    keys = sorted(set(a) & set(b), key=str)
    if parents_a is None or parents_b is None:
        return keys
    return [k for k in keys if parents_a.get(k) == parents_b.get(k)]


def paired_difference(a: Mapping, b: Mapping, parents_a: Mapping | None = None,
                      parents_b: Mapping | None = None, confidence: float = CONFIDENCE) -> Paired:
    """Compare per-seed values ``a`` and ``b`` (seed -> value) on their common seeds and parents."""
    keys = common_keys(a, b, parents_a, parents_b)
    diff = np.array([float(a[k]) - float(b[k]) for k in keys], dtype=float)
    diff = diff[~np.isnan(diff)]
    n = int(diff.size)
    if n == 0:
        return Paired()
    if n == 1:
        return Paired(n=1, mean_diff=float(diff[0]))
    low, high = t_interval(diff, confidence)
    return Paired(n=n, mean_diff=float(diff.mean()), ci_low=low, ci_high=high,
                  t_p=_paired_t_p(diff), wilcoxon_p=_wilcoxon_p(diff))


def _paired_t_p(diff: np.ndarray) -> float:
    if float(diff.std(ddof=1)) == 0.0:  # constant differences: t is ±inf (or 0/0 when all are zero)
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def _wilcoxon_p(diff: np.ndarray) -> float:
    if not np.any(diff != 0):
        return 1.0  # no seed differs: nothing to rank
    return float(stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def intervals_disjoint(a: Summary, b: Summary) -> bool:
    """The two cells' intervals do not overlap (both need two runs): the unpaired, conservative test."""
    return a.n > 1 and b.n > 1 and (a.ci_low > b.ci_high or b.ci_low > a.ci_high)
