"""The short soak on the real one-node SLURM cluster: 16 runs launched while one fault of every kind is
injected (scancel, requeue, drain, launcher SIGKILL + restart, a second launcher, a concurrent MLflow sync),
then relaunched until settled: nothing lost, nothing trained twice, the fault-free launch's metrics exactly,
one MLflow run per run id. The long version (61 runs) is ``python slurm/soak.py --size long``."""
from __future__ import annotations

import pytest

from benchmarks.launch.soak.driver import SoakConfig, run_soak
from benchmarks.launch.soak.faults import KINDS
from benchmarks.launch.soak.grid import SHORT

pytestmark = pytest.mark.slurm


def test_short_soak_loses_duplicates_and_changes_nothing(slurm_cluster, tmp_path):
    report = run_soak(SoakConfig(size=SHORT, work=tmp_path, seed=1, per_kind=1, every_s=3.0,
                                 requeue_now=True))
    summary = "\n".join(report.lines())
    print(summary)  # the figures, shown with pytest -s
    verdict = report.verdict
    assert verdict.runs == SHORT.runs == 16
    assert verdict.done == 15, summary  # all but the run that diverges by design
    assert verdict.diverged_attempts >= 1, summary
    assert not verdict.lost and not verdict.duplicated and not verdict.mismatched, summary
    assert not verdict.mlflow_missing and not verdict.mlflow_duplicated, summary
    assert sum(report.faults.values()) >= len(KINDS) - 1, summary  # the grid may end before the last one
    assert sum(report.hit_training.values()) >= 1, summary  # some scancel or requeue stopped a training run
