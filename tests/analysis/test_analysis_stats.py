"""The statistics of analysis/stats.py and analysis/aggregate.py against reference values.

``reference/reference_values.json`` was computed once with the real rliable 1.2.0 and autorank 1.3.0 from the
fixed scores in ``reference/scores.json`` (``reference/make_reference.py`` says how; the tests never import
those packages). Everything is compared to 1e-6, the bootstrap intervals included: our resampling draws the
same indices as rliable for the same seed. The one exception is autorank's critical difference, which uses
statsmodels' ``qsturng`` (an interpolation of tables, off by up to ~1e-5 relative); ours uses scipy's exact
studentized range, checked against the formula and Demšar's table instead.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from analysis import aggregate as agg
from analysis.stats import intervals_disjoint, paired_difference, summarize

REFERENCE = Path(__file__).resolve().parent / "reference"
FIXTURE = json.loads((REFERENCE / "scores.json").read_text())
EXPECTED = json.loads((REFERENCE / "reference_values.json").read_text())
SCORES = {m: [np.asarray(t, dtype=float) for t in per_task] for m, per_task in FIXTURE["scores"].items()}
SEED, REPS, PROFILE_REPS = FIXTURE["seed"], FIXTURE["reps"], FIXTURE["profile_reps"]
BASELINE = FIXTURE["baseline"]
TOL = 1e-6


@pytest.mark.parametrize("method", sorted(SCORES))
def test_iqm_and_its_interval_equal_rliable(method):
    assert agg.iqm(SCORES[method]) == pytest.approx(EXPECTED["iqm"][method], abs=TOL)
    low, high = agg.iqm_interval(SCORES[method], reps=REPS, seed=SEED)
    assert [low, high] == pytest.approx(EXPECTED["iqm_ci"][method], abs=TOL)


@pytest.mark.parametrize("method", sorted(set(SCORES) - {BASELINE}))
def test_probability_of_improvement_and_its_interval_equal_rliable(method):
    x, y = SCORES[method], SCORES[BASELINE]
    assert agg.probability_of_improvement(x, y) == pytest.approx(EXPECTED["poi"][method], abs=TOL)
    interval = agg.poi_interval(x, y, reps=REPS, seed=SEED)
    assert list(interval) == pytest.approx(EXPECTED["poi_ci"][method], abs=TOL)


@pytest.mark.parametrize("method", sorted(SCORES))
def test_performance_profile_and_its_band_equal_rliable(method):
    taus = np.asarray(FIXTURE["taus"])
    profile = agg.performance_profile(SCORES[method], taus)
    assert profile == pytest.approx(EXPECTED["profile"][method], abs=TOL)
    low, high = agg.profile_interval(SCORES[method], taus, reps=PROFILE_REPS, seed=SEED)
    assert low == pytest.approx(EXPECTED["profile_ci"][method][0], abs=TOL)
    assert high == pytest.approx(EXPECTED["profile_ci"][method][1], abs=TOL)


def test_ranks_friedman_and_cd_equal_autorank():
    ref = EXPECTED["ranks"]
    matrix = np.column_stack([np.mean(SCORES[m], axis=1) for m in ref["methods"]])
    assert matrix == pytest.approx(np.asarray(ref["block_means"]), abs=1e-12)
    assert agg.mean_ranks(matrix) == pytest.approx([ref["mean_ranks"][m] for m in ref["methods"]], abs=TOL)
    statistic, p = agg.friedman(matrix)
    assert p == pytest.approx(ref["friedman_p"], abs=TOL)
    assert statistic == pytest.approx(ref["friedman_statistic_scipy"], abs=TOL)
    k, n = matrix.shape[1], matrix.shape[0]
    cd = agg.critical_difference(k, n)
    assert cd == pytest.approx(ref["cd_autorank"], rel=1e-5)  # qsturng's table interpolation, see the doc
    q = sps.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    assert cd == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), abs=1e-12)


def test_q_alpha_matches_demsar_table():
    """Demšar (2006) Table 5a, α = 0.05, k = 2..10."""
    table = [1.960, 2.344, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    assert [agg.q_alpha(k) for k in range(2, 11)] == pytest.approx(table, abs=1.5e-3)


def test_rank_ties_share_the_average_rank():
    ranks = agg.mean_ranks(np.array([[1.0, 1.0, 0.5], [0.9, 0.8, 0.7]]))
    assert ranks == pytest.approx([(1.5 + 1) / 2, (1.5 + 2) / 2, 3.0])


def test_rank_cliques():
    assert agg.rank_cliques([1.0, 1.5, 3.8, 4.0], cd=1.0) == [[0, 1], [2, 3]]
    assert agg.rank_cliques([1.0, 1.9, 2.8], cd=1.0) == [[0, 1], [1, 2]]
    assert agg.rank_cliques([1.0, 3.0], cd=1.0) == []


def test_identical_runs_give_probability_one_half():
    x = [np.array([0.9, 0.8, 0.7])]
    assert agg.probability_of_improvement(x, x) == 0.5
    assert agg.probability_of_improvement([np.array([1.0, 2.0])], [np.array([0.0, 0.5])]) == 1.0


def test_bootstrap_is_deterministic_and_seeded():
    x = SCORES["emaq"]
    assert agg.iqm_interval(x, reps=500, seed=3) == agg.iqm_interval(x, reps=500, seed=3)
    assert agg.iqm_interval(x, reps=500, seed=3) != agg.iqm_interval(x, reps=500, seed=4)
    ragged = [x[0], x[1][:3], x[2][:4]]
    assert agg.iqm_interval(ragged, reps=500, seed=3) == agg.iqm_interval(ragged, reps=500, seed=3)
    assert agg.poi_interval(ragged, x[:3], 200, seed=1) == agg.poi_interval(ragged, x[:3], 200, seed=1)


@pytest.mark.parametrize("ragged", [False, True])
def test_stratified_bootstrap_interval_covers_the_true_iqm(ragged):
    """Normal scores: the IQM of a symmetric distribution is its mean; a 95 % interval should contain it in
    roughly 95 % of repeated experiments (percentile intervals undercover a little at these sizes)."""
    rng = np.random.default_rng(11)
    hits, trials = 0, 200
    for _ in range(trials):
        sizes = [5, 8, 6, 10] if ragged else [6] * 4
        tasks = [0.9 + 0.03 * rng.standard_normal(n) for n in sizes]
        low, high = agg.iqm_interval(tasks, reps=1000, seed=int(rng.integers(1 << 30)))
        hits += low <= 0.9 <= high
    assert 0.85 <= hits / trials <= 0.99


def test_cell_summary_by_hand():
    s = summarize([70.0, 71.0, 75.0])
    t = sps.t.ppf(0.975, 2)
    assert (s.n, s.mean, s.sd) == (3, 72.0, pytest.approx(math.sqrt(7)))
    assert s.se == pytest.approx(math.sqrt(7 / 3))
    half = t * math.sqrt(7 / 3)
    assert (s.ci_low, s.ci_high) == (pytest.approx(72 - half), pytest.approx(72 + half))
    one = summarize([50.0, float("nan")])
    assert one.n == 1 and math.isnan(one.half_width) and not one.contains(50.0)
    assert summarize([]).n == 0


def test_paired_difference_by_hand():
    a, b = {0: 76.0, 1: 78.0, 2: 90.0}, {0: 70.0, 1: 71.0}
    d = paired_difference(a, b)  # seeds 0 and 1 only: differences 6 and 7
    half = sps.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2)
    assert (d.n, d.mean_diff) == (2, 6.5)
    assert (d.ci_low, d.ci_high) == (pytest.approx(6.5 - half), pytest.approx(6.5 + half))
    assert d.separated and d.t_p == pytest.approx(sps.ttest_rel([76, 78], [70, 71]).pvalue)
    assert d.wilcoxon_p == pytest.approx(sps.wilcoxon([6.0, 7.0]).pvalue)
    # a seed whose FP parents differ is not a pair
    assert paired_difference(a, b, {0: "p0", 1: "p1"}, {0: "p0", 1: "other"}).n == 1
    same = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert (same.mean_diff, same.t_p, same.wilcoxon_p, same.separated) == (0.0, 1.0, 1.0, False)


def test_intervals_disjoint():
    assert intervals_disjoint(summarize([90, 91, 92]), summarize([80, 81, 82]))
    assert not intervals_disjoint(summarize([90, 91, 92]), summarize([85, 91, 95]))
    assert not intervals_disjoint(summarize([90]), summarize([80, 81]))
