"""The README's demo command end to end: every method at both settings on both tasks, MLflow, the report;
a second run reuses every finished run."""
from __future__ import annotations

import subprocess
import time

import mlflow
import pytest

from tests.matrix.support import REPO, finished_metrics

pytestmark = pytest.mark.slow
METHODS = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt")


def _make_demo(out, report) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "demo", f"DEMO_OUT={out}", f"DEMO_REPORT={report}"], cwd=REPO,
                          capture_output=True, text=True, timeout=1500)


def test_demo_end_to_end_then_reused(tmp_path):
    out, report = tmp_path / "demo", tmp_path / "report"
    first = _make_demo(out, report)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"Report:   {report}/index.md" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    assert len(finished_metrics(out)) == 52  # 2 tasks x 2 seeds x (FP + 6 methods x 2 bits)

    for table in ("longtail.md", "shift_dann-digits.md"):
        rows = [line for line in (report / "tables" / table).read_text().splitlines() if line.startswith("|")]
        body = rows[2:]  # below the header and its rule
        methods = [cells[2].strip() for cells in (line.split("|") for line in body)]
        assert methods[0] == "fp", "the FP reference comes first"
        assert methods.count("fp") == 1 and all(methods.count(m) == 2 for m in METHODS[1:]), methods
        accuracies = [float(line.split("|")[3].strip().strip("*").split()[0]) for line in body]
        assert min(accuracies) > 25.0, f"{table}: an accuracy near chance (10 %): {accuracies}"
    index = (report / "index.md").read_text()
    assert "figures/" in index and any((report / "figures").glob("*.png"))

    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["demo"])
    assert len(runs) == 52 and set(runs["tags.method"]) == set(METHODS)
    assert (runs["tags.status"] == "done").all() and runs["metrics.top1_last"].notna().all()

    start = time.time()
    second = _make_demo(out, report)
    assert second.returncode == 0 and "launched 0, already done or running 52" in second.stdout
    assert time.time() - start < 60
