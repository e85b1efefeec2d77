"""Across-task statistics, as rliable (Agarwal et al. 2021) and Demšar (2006) define them; numpy/scipy only.

Scores of one method are given per task: a list with one 1-D array of run scores per task (tasks may have
different numbers of runs), or a (runs × tasks) matrix as rliable takes them.

- **IQM**: ``scipy.stats.trim_mean(all run scores, 0.25)``, 25 % cut from each end of the pooled runs × tasks.
- **Stratified bootstrap** (rliable's ``StratifiedBootstrap``): each replicate resamples, with replacement and
  within each task, as many runs as the task has; the interval is the percentile interval of the replicates.
  With equal run counts the index draws are rliable's, number for number (``RandomState(seed).choice(n,
  (n, tasks))`` per replicate, as rliable draws them from numpy's global state after
  ``np.random.seed(seed)``), so our intervals equal rliable's for the same seed (tested); unequal counts draw
  per task.
- **Probability of improvement** P(X > Y): per task the Mann–Whitney U of X over Y divided by n_x·n_y
  (ties count ½; identical runs give 0.5), averaged over tasks; its interval resamples X and Y independently
  within each task (rliable's ``StratifiedIndependentBootstrap``).
- **Performance profile**: the fraction of all runs (over tasks) scoring above τ, for each τ.
- **Ranks** (Demšar): per task (block) the methods are ranked, 1 = best, ties get the average rank; the
  Friedman test on those ranks (``scipy.stats.friedmanchisquare``, k ≥ 3 methods); the Nemenyi critical
  difference ``CD = q_α √(k(k+1)/(6N))`` with ``q_α = studentized_range.ppf(1 − α, k, ∞) / √2``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

IQM_REPS = 50_000  # rliable's default for interval estimates
PROFILE_REPS = 2_000  # rliable's default for performance profiles
CHUNK = 2_000  # replicates per vectorised block: bounded memory on large grids

TaskScores = Sequence[np.ndarray] | np.ndarray


def per_task(scores: TaskScores) -> list[np.ndarray]:
    """A list of 1-D float arrays, one per task (a 2-D array is read as runs × tasks, as in rliable)."""
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        return [np.asarray(scores[:, j], dtype=float) for j in range(scores.shape[1])]
    return [np.asarray(s, dtype=float).ravel() for s in scores]


def iqm(scores: TaskScores) -> float:
    """Interquartile mean of all runs of all tasks."""
    return float(stats.trim_mean(np.concatenate(per_task(scores)), 0.25, axis=None))


def _iqm_rows(resampled: np.ndarray) -> np.ndarray:
    return stats.trim_mean(resampled, 0.25, axis=1)


def _rectangular(tasks: list[np.ndarray]) -> np.ndarray | None:
    sizes = {t.size for t in tasks}
    return np.stack(tasks, axis=1) if len(sizes) == 1 else None


def _draw(rs: np.random.RandomState, tasks: list[np.ndarray], reps: int) -> np.ndarray:
    """``reps`` stratified resamples, each flattened to one row of all runs (runs-major like rliable's)."""
    matrix = _rectangular(tasks)
    if matrix is not None:
        n, m = matrix.shape
        idx = rs.choice(n, (reps, n, m), replace=True)  # the same stream as rliable's per-replicate draws
        return matrix[idx, np.arange(m)].reshape(reps, n * m)
    return np.concatenate([t[rs.choice(t.size, (reps, t.size), replace=True)] for t in tasks], axis=1)


def bootstrap_replicates(scores: TaskScores, statistic: Callable[[np.ndarray], np.ndarray],
                         reps: int = IQM_REPS, seed: int = 0) -> np.ndarray:
    """``statistic`` (rows of pooled runs -> one value or vector per row) over ``reps`` stratified resamples;
    shape (reps,) or (reps, d)."""
    tasks = per_task(scores)
    rs = np.random.RandomState(seed)
    out = []
    for start in range(0, reps, CHUNK):
        out.append(statistic(_draw(rs, tasks, min(CHUNK, reps - start))))
    return np.concatenate(out, axis=0)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds (numpy's default linear interpolation, as arch uses)."""
    alpha = (1 - confidence) / 2
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def iqm_interval(scores: TaskScores, reps: int = IQM_REPS, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    low, high = percentile_interval(bootstrap_replicates(scores, _iqm_rows, reps, seed), confidence)
    return float(low), float(high)


# ------------------------------------------------------------------------------ probability of improvement

def _u_fraction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann–Whitney U of x over y / (n_x n_y) along the last two axes: x (..., n_x), y (..., n_y)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def probability_of_improvement(x: TaskScores, y: TaskScores) -> float:
    """P(X > Y) averaged over tasks (x and y list the same tasks in the same order)."""
    xs, ys = per_task(x), per_task(y)
    if len(xs) != len(ys):
        raise ValueError(f"P(improvement) needs the same tasks: {len(xs)} vs {len(ys)}")
    return float(np.mean([_u_fraction(a, b) for a, b in zip(xs, ys)]))


def poi_interval(x: TaskScores, y: TaskScores, reps: int = IQM_REPS, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of P(X > Y): X's and Y's runs resampled independently within each task.

    With equal run counts per task, one replicate draws X's (n_x × tasks) indices, then Y's, as rliable does.
    """
    xs, ys = per_task(x), per_task(y)
    mx, my = _rectangular(xs), _rectangular(ys)
    rs = np.random.RandomState(seed)
    values = np.empty(reps)
    if mx is not None and my is not None and mx.shape == my.shape:
        n, m = mx.shape
        for start in range(0, reps, CHUNK):
            k = min(CHUNK, reps - start)
            # per replicate X's draw, then Y's: rliable's order
            idx = rs.choice(n, (k, 2, n, m), replace=True)
            bx, by = mx[idx[:, 0], np.arange(m)], my[idx[:, 1], np.arange(m)]
            values[start:start + k] = _u_fraction(bx.transpose(0, 2, 1), by.transpose(0, 2, 1)).mean(axis=1)
    elif mx is not None and my is not None:
        m = mx.shape[1]
        for r in range(reps):
            bx = mx[rs.choice(mx.shape[0], mx.shape, replace=True), np.arange(m)]
            by = my[rs.choice(my.shape[0], my.shape, replace=True), np.arange(m)]
            values[r] = np.mean(_u_fraction(bx.T, by.T))
    else:  # unequal run counts across tasks: resample each task on its own
        for r in range(reps):
            values[r] = np.mean([_u_fraction(a[rs.choice(a.size, a.size)], b[rs.choice(b.size, b.size)])
                                 for a, b in zip(xs, ys)])
    low, high = percentile_interval(values, confidence)
    return float(low), float(high)


# ------------------------------------------------------------------------------------ performance profiles

def performance_profile(scores: TaskScores, taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs with score > τ, for each τ."""
    pooled = np.concatenate(per_task(scores))
    return (pooled[None, :] > np.asarray(taus, dtype=float)[:, None]).mean(axis=1)


def profile_interval(scores: TaskScores, taus: np.ndarray, reps: int = PROFILE_REPS, seed: int = 0,
                     confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    taus = np.asarray(taus, dtype=float)

    def fractions(rows: np.ndarray) -> np.ndarray:
        return (rows[:, None, :] > taus[None, :, None]).mean(axis=2)

    return percentile_interval(bootstrap_replicates(scores, fractions, reps, seed), confidence)


# ------------------------------------------------------------------------------------------------- ranks

def mean_ranks(matrix: np.ndarray) -> np.ndarray:
    """Mean rank of each method (columns) over blocks (rows); 1 = highest score, ties averaged."""
    matrix = np.asarray(matrix, dtype=float)
    return stats.rankdata(-matrix, axis=1, method="average").mean(axis=0)


def friedman(matrix: np.ndarray) -> tuple[float, float]:
    """Friedman chi-square statistic and p over blocks (rows) × methods (columns); needs ≥ 3 methods."""
    matrix = np.asarray(matrix, dtype=float)
    result = stats.friedmanchisquare(*matrix.T)
    return float(result.statistic), float(result.pvalue)


def q_alpha(k: int, alpha: float = 0.05) -> float:
    """Demšar's Nemenyi q_α for k methods: the studentized range quantile (df = ∞) over √2."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks for k methods over n_blocks tasks."""
    return q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


def rank_cliques(ranks: Sequence[float], cd: float) -> list[list[int]]:
    """Groups of methods (indices) whose mean ranks all lie within ``cd`` of each other: the bars of a CD
    diagram. Maximal groups of two or more only, ordered by their best rank."""
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])
    groups = []
    for a, i in enumerate(order):
        group = [j for j in order[a:] if ranks[j] - ranks[i] < cd]
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append(group)
    return groups
