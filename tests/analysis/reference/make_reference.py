"""Reference values for tests/analysis/test_analysis_statistics.py, computed with the real packages.

NEEDS rliable and autorank, which the project does not depend on: run it in a throwaway venv outside the repo,

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install rliable autorank
    /tmp/refvenv/bin/python tests/analysis/reference/make_reference.py

It reads ``scores.json`` beside it and writes ``reference_values.json`` (committed; the tests never import
these packages). Versions used for the committed file: rliable 1.2.0 (arch 7.2.0), autorank 1.3.0 (statsmodels
0.15.0), numpy 2.4.6, scipy 1.17.1, pandas 2.3.3 (arch 7.2 fails to import under pandas 3: ``pip install
'pandas<3'`` in that venv).

Bootstrap intervals: rliable draws its resampling indices from numpy's global RandomState, so each interval is
computed right after ``np.random.seed(seed)``, one method (or one pair) per call.
"""
from __future__ import annotations

import contextlib
import io
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from autorank import autorank
from rliable import library, metrics
from scipy import stats

HERE = Path(__file__).resolve().parent


def matrix(per_task: list[list[float]]) -> np.ndarray:
    """rliable's layout: runs x tasks."""
    return np.asarray(per_task, dtype=float).T


def main() -> None:
    fixture = json.loads((HERE / "scores.json").read_text())
    seed, reps, profile_reps = fixture["seed"], fixture["reps"], fixture["profile_reps"]
    taus = np.asarray(fixture["taus"], dtype=float)
    scores = {m: matrix(s) for m, s in fixture["scores"].items()}
    baseline = fixture["baseline"]
    out: dict = {"command": "/tmp/refvenv/bin/python tests/analysis/reference/make_reference.py",
                 "versions": {p: version(p) for p in ("rliable", "arch", "autorank", "statsmodels", "numpy",
                                                      "scipy")},
                 "iqm": {}, "iqm_ci": {}, "poi": {}, "poi_ci": {}, "profile": {}, "profile_ci": {}}

    def iqm_func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x)])

    def poi_func(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    for method, x in scores.items():
        np.random.seed(seed)
        point, ci = library.get_interval_estimates({method: x}, iqm_func, reps=reps)
        out["iqm"][method], out["iqm_ci"][method] = float(point[method][0]), ci[method][:, 0].tolist()
        np.random.seed(seed)
        profile, band = library.create_performance_profile({method: x}, taus, reps=profile_reps)
        out["profile"][method], out["profile_ci"][method] = profile[method].tolist(), band[method].tolist()
        if method != baseline:
            np.random.seed(seed)
            point, ci = library.get_interval_estimates({method: [x, scores[baseline]]}, poi_func, reps=reps)
            out["poi"][method], out["poi_ci"][method] = float(point[method][0]), ci[method][:, 0].tolist()

    # Demšar via autorank: blocks = tasks, values = the per-task mean of each method's runs
    means = pd.DataFrame({m: x.mean(axis=0) for m, x in scores.items()})
    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints its result frame
        result = autorank(means, alpha=0.05, verbose=False, order="descending", force_mode="nonparametric")
    out["ranks"] = {
        "block_means": means.to_numpy().tolist(), "methods": list(means.columns),
        "mean_ranks": {m: float(result.rankdf.loc[m, "meanrank"]) for m in means.columns},
        "friedman_p": float(result.pvalue), "cd_autorank": float(result.cd), "omnibus": result.omnibus,
        "posthoc": result.posthoc,
        # autorank reports no Friedman statistic; this is the scipy call autorank makes for its p-value
        "friedman_statistic_scipy": float(stats.friedmanchisquare(*means.to_numpy().T).statistic),
    }
    (HERE / "reference_values.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
