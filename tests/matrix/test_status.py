"""benchmarks/matrix/status.py on hand-made run directories: a failed FP parent blocks its own QAT runs (with
the parent's error), never the other parent's; counts, the progress line, --status and --delete-incomplete."""
from __future__ import annotations

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.matrix.status import delete_incomplete, print_runs, progress_line, run_statuses
from benchmarks.run.result import Metrics, ResultRecord
from benchmarks.run.rundir import RunDir
from tests.matrix.support import run_matrix, two_parent_grid


def _grid_with_a_failed_parent(tmp_path):
    grid = two_parent_grid(tmp_path)
    specs = expand(load_grid(str(grid)), "full")
    output = tmp_path / "out"
    good = next(s for s in specs if s.method == "fp" and s.seed == 0)
    bad = next(s for s in specs if s.method == "fp" and s.seed == 1)
    for run_id in (good.run_id, bad.run_id):
        RunDir.of(output, run_id).path.mkdir(parents=True)
    finished = RunDir.of(output, good.run_id)
    finished.write_result(ResultRecord(run_id=good.run_id, spec=good.to_dict(),
                                       metrics=Metrics(top1_last=90.0)))
    finished.mark_done()  # done counts only beside a readable result
    RunDir.of(output, bad.run_id).write_failure("UnpicklingError: invalid load key, 'n'.\nmore", "trace")
    return grid, specs, output, good, bad


def test_failed_parent_blocks_only_its_own_runs(tmp_path):
    _, specs, output, good, bad = _grid_with_a_failed_parent(tmp_path)
    statuses = run_statuses(specs, output)
    assert statuses[good.run_id] == ("done", None)
    assert statuses[bad.run_id] == ("failed", "UnpicklingError: invalid load key, 'n'.")
    for spec in specs:
        if spec.method != "fp":
            parent = spec.parent().run_id
            want = (("blocked", f"FP parent {bad.run_id} failed: UnpicklingError: invalid load key, 'n'.")
                    if parent == bad.run_id else ("not_launched", None))
            assert statuses[spec.run_id] == want
    assert progress_line(specs, output) == "pending 2 | running 0 | done 1 | failed 1 | blocked 2 | total 6"
    lines: list[str] = []
    print_runs(specs, output, show_all=False, echo=lines.append)
    assert lines[0] == "runs by state: blocked 2, done 1, failed 1, not_launched 2 (total 6)"
    blocked = [line for line in lines if line.startswith("  blocked ")]
    assert len(blocked) == 2 and all(f"FP parent {bad.run_id} failed" in line for line in blocked)
    assert f"  failed {bad.run_id}: UnpicklingError: invalid load key, 'n'." in lines
    assert lines[-1].startswith("estimated GPU-hours for the 5 runs not done")


def test_delete_incomplete_then_the_blocked_runs_are_pending_again(tmp_path):
    _, specs, output, good, bad = _grid_with_a_failed_parent(tmp_path)
    assert delete_incomplete(specs, output) == 1
    assert not RunDir.of(output, bad.run_id).exists() and RunDir.of(output, good.run_id).is_done()
    assert "blocked" not in {status for status, _ in run_statuses(specs, output).values()}


def test_status_cli_reports_blocked_runs_with_the_reason(tmp_path):
    grid, _, output, _, bad = _grid_with_a_failed_parent(tmp_path)
    out = run_matrix("--grid", str(grid), "--status", "--output", str(output), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "runs by state: blocked 2, done 1, failed 1, not_launched 2 (total 6)" in out.stdout
    assert f"FP parent {bad.run_id} failed: UnpicklingError" in out.stdout
