"""On the real one-node cluster: a second launch of a grid whose jobs are still PENDING submits no job, and
every run is then trained exactly once by the first launch's jobs.

The first launch's jobs are kept pending with ``--begin=now+10minutes`` (a profile of this test), so nobody
else's jobs are held up and the node is never drained; the test then moves their begin time to now."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.launch.soak.verdict import EPOCH_LINE
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunDir
from tests.matrix.support import REPO, run_matrix, wait_for

pytestmark = pytest.mark.slurm


def _grid(tmp_path: Path) -> tuple[Path, str]:
    name = f"dedupe{os.getpid()}"  # a job name of this test only: scancel touches nothing else
    text = (REPO / "benchmarks/grids/smoke.yaml").read_text().replace("name: smoke", f"name: {name}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path, name


def _profile(tmp_path: Path) -> Path:
    text = (REPO / "slurm/profiles/local.yaml").read_text()
    path = tmp_path / "later.yaml"
    path.write_text(text.replace("additional_parameters: {}", "additional_parameters: {begin: now+600}"))
    return path


def _tasks(stdout: str) -> int:
    return sum(int(k) for k in re.findall(r"^slurm: job \d+ \((\d+) task", stdout, flags=re.M))


def test_a_second_launch_leaves_pending_jobs_alone(slurm_cluster, tmp_path):
    grid, name = _grid(tmp_path)
    output, profile = tmp_path / "out", _profile(tmp_path)
    specs = expand(load_grid(str(grid)), "full")
    launch = ("--grid", str(grid), "--launcher", "slurm", "--slurm-profile", str(profile), "--no-wait",
              "--output", str(output), "--no-sync")
    try:
        first = run_matrix(*launch)
        assert first.returncode == 0, first.stdout + first.stderr
        assert _tasks(first.stdout) == 3
        jobs = {RunDir.of(output, s.run_id).read_queued()["job_id"] for s in specs}
        states = subprocess.run(["squeue", "-h", "-r", "-n", f"qbench-{name}", "-o", "%i %T"],
                                capture_output=True, text=True, check=True).stdout.split("\n")
        assert {row.split()[0] for row in states if row.strip()} == jobs  # all three still queued
        assert all(row.split()[1] == "PENDING" for row in states if row.strip())

        second = run_matrix(*launch)
        assert second.returncode == 0, second.stdout + second.stderr
        assert _tasks(second.stdout) == 0, second.stdout
        assert "already queued: 3 runs in jobs of an earlier launch" in second.stdout

        for job in jobs:  # let them start now
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True,
                           capture_output=True)
        wait_for(lambda: all(RunDir.of(output, s.run_id).is_done() for s in specs), 600, "the three runs")
    finally:
        subprocess.run(["scancel", "-n", f"qbench-{name}"], capture_output=True)
    for spec in specs:  # each epoch trained once
        epochs = EPOCH_LINE.findall(RunDir.of(output, spec.run_id).log_path.read_text())
        assert sorted(epochs) == ["1", "2"], (spec.run_id, epochs)
    third = run_matrix(*launch)  # done runs: nothing to submit, and no squeue answer needed
    assert _tasks(third.stdout) == 0 and "already done or running 3" in third.stdout
