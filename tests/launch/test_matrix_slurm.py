"""The smoke grid through submitit on the real one-node SLURM cluster; a requeued job resumes; a failed FP
parent holds back only its own QAT runs (blocked, with the reason) until it is fixed and relaunched."""
from __future__ import annotations

import subprocess

import pytest

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunDir, read_json
from tests.matrix.support import (
    finished_metrics,
    longer_grid,
    plant_unfitting_checkpoint,
    run_matrix,
    two_parent_grid,
    wait_for,
)

pytestmark = pytest.mark.slurm


def test_smoke_on_slurm_matches_debug(slurm_cluster, tmp_path):
    debug, slurm = tmp_path / "debug", tmp_path / "slurm"
    q = ("--no-sync",)
    assert run_matrix("--grid", "smoke", "--launcher", "debug", "--output", str(debug), *q).returncode == 0
    out = run_matrix("--grid", "smoke", "--launcher", "slurm", "--slurm-profile", "local",
                     "--output", str(slurm), *q)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitting 3 runs to SLURM (1 FP, 2 QAT)" in out.stdout
    assert finished_metrics(slurm) == finished_metrics(debug) and len(finished_metrics(slurm)) == 3
    again = run_matrix("--grid", "smoke", "--launcher", "slurm", "--output", str(slurm), "--no-sync")
    assert "launched 0, already done or running 3" in again.stdout


def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    # 10 short epochs: the requeue (sent right after epoch 1) lands long before the run could end
    grid = longer_grid(tmp_path, epochs=10, steps=15)
    reference, output = tmp_path / "reference", tmp_path / "requeued"
    assert run_matrix("--grid", str(grid), "--launcher", "debug", "--output", str(reference),
                      "--no-sync").returncode == 0
    out = run_matrix("--grid", str(grid), "--launcher", "slurm", "--no-wait", "--output", str(output),
                     "--no-sync")
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


def test_failed_parent_blocks_only_its_own_qat_runs(slurm_cluster, tmp_path):
    """Two FP parents (seeds 0 and 1), seed 1's broken (a corrupt resume checkpoint): seed 0's QAT runs
    finish; seed 1's are cancelled by SLURM (afterok on their own parent's task, kill-on-invalid-dep) and
    reported as blocked with the parent's error, in the launch output and in --status. Fixed (its directory
    deleted) and relaunched, the parent and exactly its QAT runs are submitted again and finish."""
    grid = two_parent_grid(tmp_path)
    specs = expand(load_grid(str(grid)), "full")
    bad = next(s for s in specs if s.method == "fp" and s.seed == 1)
    blocked = [s for s in specs if s.method != "fp" and s.seed == 1]
    output = tmp_path / "out"
    plant_unfitting_checkpoint(output, bad.run_id)
    args = ("--grid", str(grid), "--launcher", "slurm", "--slurm-profile", "local", "--output", str(output),
            "--no-sync")
    out = run_matrix(*args)
    assert out.returncode == 1, out.stdout + out.stderr  # not every run is done
    assert "submitting 6 runs to SLURM (2 FP, 4 QAT)" in out.stdout
    assert set(finished_metrics(output)) == {s.run_id for s in specs if s.seed == 0}
    reason = f"FP parent {bad.run_id} failed: RuntimeError: Error(s) in loading state_dict"
    for spec in blocked:
        assert f"  blocked {spec.run_id}: {reason}" in out.stdout
        directory = RunDir.of(output, spec.run_id)  # never started: only the launch's queued.json
        assert not directory.spec_path.exists() and directory.read_queued() is not None
    wait_for(lambda: not _queued("qbench-twoparents"), 60, "SLURM to cancel the blocked runs", poll=1)
    status = run_matrix("--grid", str(grid), "--status", "--output", str(output))
    assert "runs by state: blocked 2, done 3, failed 1 (total 6)" in status.stdout
    assert all(f"blocked {spec.run_id}: {reason}" in status.stdout for spec in blocked)

    deleted = run_matrix("--grid", str(grid), "--delete-incomplete", "--output", str(output))
    assert "deleted 1 " in deleted.stdout
    again = run_matrix(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitting 3 runs to SLURM (1 FP, 2 QAT)" in again.stdout
    assert set(finished_metrics(output)) == {s.run_id for s in specs}


def _queued(name: str) -> list[str]:
    """Job ids with this name still in the SLURM queue (pending or running)."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _job_of(directory) -> str:
    beat = read_json(directory / "heartbeat")
    assert beat["slurm_job_id"], "the run should record its SLURM job id"
    return beat["slurm_job_id"]
