"""The smoke grid through submitit on the real one-node SLURM cluster; a requeued job resumes."""
from __future__ import annotations

import subprocess

import pytest

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunDir, read_json
from tests.matrix.support import finished_metrics, longer_grid, run_matrix, wait_for

pytestmark = pytest.mark.slurm


def test_smoke_on_slurm_matches_debug(slurm_cluster, tmp_path):
    debug, slurm = tmp_path / "debug", tmp_path / "slurm"
    assert run_matrix("--grid", "smoke", "--launcher", "debug", "--output", str(debug), "--no-sync").returncode == 0
    out = run_matrix("--grid", "smoke", "--launcher", "slurm", "--slurm-profile", "local", "--output", str(slurm),
                     "--no-sync")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted 3 runs to SLURM (1 FP, 2 QAT)" in out.stdout
    assert finished_metrics(slurm) == finished_metrics(debug) and len(finished_metrics(slurm)) == 3
    again = run_matrix("--grid", "smoke", "--launcher", "slurm", "--output", str(slurm), "--no-sync")
    assert "launched 0, already done or running 3" in again.stdout


def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    # 10 short epochs: the requeue (sent right after epoch 1) lands long before the run could end
    grid = longer_grid(tmp_path, epochs=10, steps=15)
    reference, output = tmp_path / "reference", tmp_path / "requeued"
    assert run_matrix("--grid", str(grid), "--launcher", "debug", "--output", str(reference),
                      "--no-sync").returncode == 0
    out = run_matrix("--grid", str(grid), "--launcher", "slurm", "--no-wait", "--output", str(output), "--no-sync")
    assert out.returncode == 0, out.stdout + out.stderr
    qat = next(s for s in expand(load_grid(str(grid)), "full") if s.method != "fp")
    directory = RunDir.of(output, qat.run_id).path
    wait_for(lambda: len(RunDir(directory).read_metrics()) >= 1, 400, "the QAT run's first epoch", poll=0.05)
    job = _job_of(directory)
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    wait_for(lambda: (directory / "done").exists(), 600, "the requeued run to finish", poll=2)
    logs = "".join(p.read_text() for p in (output / "submitit").glob("*/*_log.*"))
    assert "SIGTERM received: stopped before step" in logs  # the first attempt stopped, did not run on
    assert "resuming after epoch" in logs
    assert finished_metrics(output) == finished_metrics(reference)


def _job_of(directory) -> str:
    beat = read_json(directory / "heartbeat")
    assert beat["slurm_job_id"], "the run should record its SLURM job id"
    return beat["slurm_job_id"]
