"""Golden files: committed real run records of the smoke grid give exactly the committed tables, from the run
directories and from MLflow. Regenerate both deliberately with ``tests/golden/make_golden.py``."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from scipy import stats

from analysis.collect import collect_mlflow, collect_runs
from analysis.report import make_report
from benchmarks.run.rundir import RunDir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "smoke-golden"
EXPECTED = GOLDEN / "expected" / "tables"
NAMES = sorted(p.name for p in EXPECTED.iterdir())


def _report(runs, out: Path) -> dict[str, str]:
    make_report(runs, runs.iloc[:0], out, source="golden", figure_formats=())
    return {p.name: p.read_text() for p in sorted((out / "tables").iterdir())}


@pytest.fixture(scope="module")
def from_dirs(tmp_path_factory) -> dict[str, str]:
    runs, _ = collect_runs(GOLDEN / "runs")
    return _report(runs, tmp_path_factory.mktemp("dirs"))


def test_the_records_are_what_the_generator_says():
    states = sorted(RunDir(d).state().value for d in (GOLDEN / "runs").iterdir())
    assert states == ["done"] * 10 + ["failed", "incomplete"]


@pytest.mark.parametrize("name", NAMES)
def test_tables_match_the_golden_files(from_dirs, name):
    assert sorted(from_dirs) == NAMES
    assert from_dirs[name] == (EXPECTED / name).read_text(), \
        f"{name} changed: rerun tests/golden/make_golden.py if the change is intended, and review the diff"


def test_incomplete_and_failed_runs_are_in_coverage_and_in_no_mean(from_dirs):
    coverage = from_dirs["coverage.md"]
    assert "| lsq | standard | W4/A4 | default | 4 | 3 | 1 | 0 | 0 |" in coverage
    assert "| dorefa | standard | W4/A4 | default | 4 | 3 | 0 | 1 | 0 |" in coverage
    runs, info = collect_runs(GOLDEN / "runs")
    done = runs[runs["status"] == "done"]
    lsq = done.loc[done["method"] == "lsq", "top1_last"]
    assert (info.n_done, info.n_incomplete, info.n_failed) == (10, 1, 1) and len(lsq) == 3
    half = stats.t.ppf(0.975, 2) * lsq.std() / 3 ** 0.5
    assert f"{lsq.mean():.1f} ± {half:.1f} (3)" in from_dirs["standard.md"]  # the mean of the done runs


def test_mlflow_source_gives_the_same_tables(from_dirs, tmp_path):
    """Through the project's real sync into a sqlite store (the run dirs are copied: sync writes nothing
    into the committed records, but a test must not risk it)."""
    from benchmarks.tracking.mlflow_sync import sync_runs

    output = tmp_path / "out"
    shutil.copytree(GOLDEN, output, ignore=shutil.ignore_patterns("expected"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync_runs(output, uri)
    runs, info = collect_mlflow(uri, ["smoke-golden"])
    assert (info.n_done, info.n_failed) == (10, 1)  # incomplete runs are never synced
    mlflow_tables = _report(runs, tmp_path / "mlflow")
    for name in NAMES:
        if not name.startswith("coverage"):
            assert mlflow_tables[name] == from_dirs[name], name
    # from MLflow the unsynced incomplete run is a missing seed, not an incomplete one
    assert "| lsq | standard | W4/A4 | default | 4 | 3 | 0 | 0 | 1 | 3 |" in mlflow_tables["coverage.md"]
