"""The smoke grid end to end through the debug and local launchers; idempotent relaunch; SIGKILL + resume; a
failed FP parent that blocks only its own QAT runs until it is fixed and the grid relaunched."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunDir, RunState
from tests.matrix.support import (
    REPO,
    finished_metrics,
    longer_grid,
    plant_unfitting_checkpoint,
    run_matrix,
    two_parent_grid,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def debug_output(tmp_path_factory):
    output = tmp_path_factory.mktemp("smoke-debug")
    out = run_matrix("--grid", "smoke", "--launcher", "debug", "--output", str(output), "--no-sync")
    assert out.returncode == 0, out.stdout + out.stderr
    return output


def test_smoke_debug_completes_and_relaunch_runs_nothing(debug_output):
    specs = expand(load_grid("smoke"), "full")
    assert set(finished_metrics(debug_output)) == {s.run_id for s in specs}
    again = run_matrix("--grid", "smoke", "--launcher", "debug", "--output", str(debug_output), "--no-sync")
    assert again.returncode == 0 and "launched 0, already done or running 3" in again.stdout


def test_local_launcher_gives_the_same_metrics(debug_output, tmp_path):
    # One worker keeps the thread count of the debug run: CPU sums are reproducible per thread count only.
    out = run_matrix("--grid", "smoke", "--launcher", "local", "--workers", "1", "--output", str(tmp_path),
                     "--no-sync")
    assert out.returncode == 0, out.stdout + out.stderr
    assert finished_metrics(tmp_path) == finished_metrics(debug_output)


def test_sigkilled_run_is_incomplete_then_resumes_to_the_same_result(tmp_path):
    grid = longer_grid(tmp_path)
    reference = tmp_path / "reference"
    assert run_matrix("--grid", str(grid), "--launcher", "debug", "--output", str(reference),
                      "--no-sync").returncode == 0
    specs = expand(load_grid(str(grid)), "full")
    qat = next(s for s in specs if s.method != "fp")
    output = tmp_path / "killed"
    # Train the FP parent, then start the QAT run in its own process and SIGKILL it after its first epoch.
    assert run_matrix("--grid", str(grid), "--methods", "fp", "--launcher", "debug", "--output", str(output),
                      "--no-sync").returncode == 0
    code = ("import sys; from pathlib import Path; from benchmarks.run.spec import RunSpec; "
            "from benchmarks.run.trainer import run; import json; "
            f"run(RunSpec.from_dict(json.loads({json.dumps(json.dumps(qat.to_dict()))})), "
            f"Path({str(output)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    directory = RunDir.of(output, qat.run_id).path
    wait_for(lambda: len(RunDir(directory).read_metrics()) >= 1, 300, "the first epoch")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunDir(directory).state() is RunState.INCOMPLETE
    assert len(RunDir(directory).read_metrics()) < qat.recipe.epochs
    out = run_matrix("--grid", str(grid), "--launcher", "debug", "--output", str(output), "--no-sync")
    assert out.returncode == 0 and "resuming after epoch" in out.stdout + out.stderr, out.stdout + out.stderr
    assert finished_metrics(output) == finished_metrics(reference)


def test_status_and_delete_incomplete_never_touch_done_runs(debug_output, tmp_path):
    status = run_matrix("--grid", "smoke", "--status", "--output", str(debug_output))
    assert "runs by state: done 3 (total 3)" in status.stdout
    removed = run_matrix("--grid", "smoke", "--delete-incomplete", "--output", str(debug_output))
    assert "deleted 0" in removed.stdout and len(finished_metrics(debug_output)) == 3


def test_failed_parent_blocks_only_its_own_runs_until_relaunched(tmp_path):
    """Two FP parents, one of them broken: the other's QAT run finishes, the broken one's is reported as
    blocked (launch output and --status) and never started; fixed and relaunched, everything finishes."""
    grid = two_parent_grid(tmp_path, methods="fp, lsq")
    specs = expand(load_grid(str(grid)), "full")
    bad = next(s for s in specs if s.method == "fp" and s.seed == 1)
    bad_child = next(s for s in specs if s.method != "fp" and s.seed == 1)
    output = tmp_path / "out"
    plant_unfitting_checkpoint(output, bad.run_id)
    args = ("--grid", str(grid), "--launcher", "local", "--workers", "2", "--output", str(output),
            "--no-sync")
    out = run_matrix(*args)
    assert out.returncode == 1, out.stdout + out.stderr  # not every run is done
    assert set(finished_metrics(output)) == {s.run_id for s in specs if s.seed == 0}
    assert "launched 3, already done or running 0, failed 1, blocked by a failed or running FP parent 1" \
        in out.stdout
    reason = f"blocked {bad_child.run_id}: FP parent {bad.run_id} failed: RuntimeError: Error(s) in loading"
    assert f"  {reason}" in out.stdout
    assert not RunDir.of(output, bad_child.run_id).exists()  # never started
    status = run_matrix("--grid", str(grid), "--status", "--output", str(output))
    assert "runs by state: blocked 1, done 2, failed 1 (total 4)" in status.stdout
    assert reason in status.stdout
    deleted = run_matrix("--grid", str(grid), "--delete-incomplete", "--output", str(output))
    assert "deleted 1 " in deleted.stdout
    again = run_matrix(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "launched 2, already done or running 2, failed 0, blocked by a failed or running FP parent 0" \
        in again.stdout
    assert set(finished_metrics(output)) == {s.run_id for s in specs}


def test_two_concurrent_launches_train_every_run_exactly_once(debug_output, tmp_path):
    """Two launchers on one grid and one output at once (both syncing MLflow): each run is trained by one of
    them (its log shows every epoch once), the other waits for it, both exit 0, and the metrics equal a
    single launch's."""
    cmd = [sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", "smoke", "--launcher", "local",
           "--workers", "1", "--output", str(tmp_path)]
    # one worker each: the thread count of the debug run (CPU sums are reproducible per thread count only)
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for spec in expand(load_grid("smoke"), "full"):
        log = RunDir.of(tmp_path, spec.run_id).log_path.read_text()
        epochs = spec.recipe.epochs
        for epoch in range(1, epochs + 1):
            assert log.count(f"epoch {epoch}/{epochs} ") == 1, (spec.run_id, log)
    assert finished_metrics(tmp_path) == finished_metrics(debug_output)
