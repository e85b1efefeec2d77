"""The live view (benchmarks/matrix/progress.py), --logs (benchmarks/matrix/logs.py) and Ctrl-C of
run_matrix.py. The views read run directories planted with RunDir's own writers; Ctrl-C is a real SIGINT to
a real launcher process with a real worker."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.matrix.expand import Filters, expand
from benchmarks.matrix.grids import load_grid
from benchmarks.matrix.logs import find_run, print_log
from benchmarks.matrix.progress import LiveView, PlainView, take_snapshot
from benchmarks.run.rundir import RunDir, RunState
from tests.matrix.support import REPO


@pytest.fixture
def grid(tmp_path):
    """The smoke grid's three runs (FP, LSQ, DoReFa) under tmp_path/out; none started."""
    specs = expand(load_grid("smoke"), "full", Filters())
    return specs, tmp_path / "out"


def _start(output: Path, spec, epochs: int) -> RunDir:
    """Plant a run this process is working on, with ``epochs`` epochs finished."""
    directory = RunDir.of(output, spec.run_id)
    directory.write_spec({"run_id": spec.run_id, "spec": spec.to_dict()})
    directory.write_metrics([{"epoch": e + 1, "train_loss": 1.0} for e in range(epochs)])
    directory.write_heartbeat()
    return directory


def test_plain_view_prints_one_line_per_event(grid):
    specs, output = grid
    fp, lsq, dorefa = specs
    stream = io.StringIO()
    view = PlainView(stream)
    _start(output, fp, 1)
    view.update(take_snapshot(specs, output))
    _start(output, fp, 2)
    failed = RunDir.of(output, dorefa.run_id)
    failed.write_spec({"run_id": dorefa.run_id})
    failed.write_failure("RuntimeError: boom at epoch 1\nsecond line", "Traceback ...")
    view.update(take_snapshot(specs, output))
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"started {fp.run_id} (fp FP optdigits dann_digits s0)"
    assert lines[1].startswith("pending 2 | running 1 | done 0 | failed 0 | blocked 0 | total 3 | ETA ")
    assert lines[1].endswith("(cost model)")
    assert lines[2].startswith(f"epoch 2/2 {fp.run_id} (")
    # the reason from failed.json, not a log path
    assert lines[3] == f"FAILED {dorefa.run_id}: RuntimeError: boom at epoch 1"
    assert lines[4].startswith("pending 1 | running 1 | done 0 | failed 1 |")
    assert len(lines) == 5
    assert lsq.run_id not in stream.getvalue()


def _work(spec) -> float:
    """What the ETA counts a run as once runs have finished: the cost model without its GPU step ratio."""
    from benchmarks.matrix.cost import gpu_hours, step_ratio

    return gpu_hours(spec) / step_ratio(spec)


def test_eta_from_finished_runs_over_the_workers(grid, monkeypatch):
    """Once runs have finished, the ETA is the work left (each run's images at an FP step's cost), at the
    pace the finished runs showed (wall time over their own work), divided over the workers."""
    from benchmarks.matrix import progress

    specs, output = grid
    _start(output, specs[0], 1)  # half of a 2-epoch run left
    monkeypatch.setattr(progress, "run_statuses", lambda s, o: {
        specs[0].run_id: ("running", None), specs[1].run_id: ("not_launched", None),
        specs[2].run_id: ("done", None)})
    monkeypatch.setattr(progress, "_wall_s", lambda directory: 100.0)
    snap = take_snapshot(specs, output, workers=2)
    estimate = [3600 * _work(s) for s in specs]
    pace = 100.0 / estimate[2]
    assert snap.eta_s == pytest.approx(pace * (estimate[0] / 2 + estimate[1]) / 2)
    assert snap.eta_source == "cost model at the pace of 1 finished runs"


def test_eta_follows_each_runs_length_not_the_run_count(grid, monkeypatch):
    """A long FP parent finished (8 epochs): its two 1-epoch children are not each given its wall time."""
    from dataclasses import replace

    from benchmarks.matrix import progress

    specs, output = grid
    fp, lsq, dorefa = specs
    long_fp = fp.with_(recipe=replace(fp.recipe, epochs=8))
    short = [run.with_(recipe=replace(run.recipe, epochs=1)) for run in (lsq, dorefa)]
    monkeypatch.setattr(progress, "run_statuses", lambda s, o: {
        long_fp.run_id: ("done", None), **{run.run_id: ("not_launched", None) for run in short}})
    monkeypatch.setattr(progress, "_wall_s", lambda directory: 800.0)
    snap = take_snapshot([long_fp, *short], output)
    pace = 800.0 / _work(long_fp)
    assert snap.eta_s == pytest.approx(pace * sum(_work(run) for run in short))
    assert snap.eta_s < 800.0  # a median per run would say 1,600 s


def test_eta_uses_the_pace_of_the_same_methods_finished_runs(grid, monkeypatch):
    """Finished FP and LSQ runs at different paces: a remaining LSQ run goes at LSQ's pace, and so does a
    remaining DoReFa run (none of its own finished: the pace of its kind, quantized runs)."""
    from benchmarks.matrix import progress

    specs, output = grid
    fp, lsq, dorefa = specs
    lsq_2 = lsq.with_(seed=1)
    monkeypatch.setattr(progress, "run_statuses", lambda s, o: {
        fp.run_id: ("done", None), lsq.run_id: ("done", None), lsq_2.run_id: ("not_launched", None),
        dorefa.run_id: ("not_launched", None)})
    walls = {fp.run_id: 10.0, lsq.run_id: 90.0}
    monkeypatch.setattr(progress, "_wall_s", lambda directory: walls[directory.path.name])
    snap = take_snapshot([fp, lsq, lsq_2, dorefa], output)
    paces = [10.0 / _work(fp), 90.0 / _work(lsq)]
    assert snap.eta_s == pytest.approx(paces[1] * (_work(lsq_2) + _work(dorefa)))
    only_fp = take_snapshot([fp, dorefa], output)  # no quantized run finished: the pace of all (FP's)
    assert only_fp.eta_s == pytest.approx(paces[0] * _work(dorefa))


def test_live_view_draws_a_bar_per_running_run(grid):
    specs, output = grid
    _start(output, specs[0], 1)
    stream = io.StringIO()
    view = LiveView(len(specs), stream)
    view.update(take_snapshot(specs, output))
    view.close()
    text = stream.getvalue()
    assert "grid" in text and "pending 2 | running 1" in text
    assert specs[0].run_id in text and "epoch 1/2" in text


def test_logs_by_prefix_and_unknown_ids(grid, capsys):
    specs, output = grid
    directory = _start(output, specs[0], 1)
    directory.append_log("epoch 1 loss 0.5")
    assert find_run(output, specs[0].run_id[:4]) == directory
    with pytest.raises(ValueError, match="unknown run id 'zz'"):
        find_run(output, "zz")
    for run_id in ("abcd0001", "abcd0002"):
        RunDir.of(output, run_id).write_spec({"run_id": run_id})
    with pytest.raises(ValueError, match="'abcd' is ambiguous: abcd0001, abcd0002"):
        find_run(output, "abcd")
    from benchmarks.run_matrix import main

    assert main(["--grid", "smoke", "--output", str(output), "--logs", specs[0].run_id[:6]]) == 0
    assert capsys.readouterr().out.endswith("epoch 1 loss 0.5\n")


def test_follow_prints_new_lines_until_the_run_stops(grid):
    specs, output = grid
    directory = _start(output, specs[0], 1)
    directory.append_log("first")
    stream = io.StringIO()
    directory.write_failure("KeyboardInterrupt", "", interrupted=True)
    directory.heartbeat_path.unlink()  # the worker is gone: follow stops after the last lines
    directory.append_log("last")
    assert print_log(directory, follow=True, stream=stream, poll_s=0.01, max_wait_s=5) == 0
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines[:2]] == ["first", "last"]
    assert lines[2] == f"(run {specs[0].run_id} is interrupted)"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_workers_and_records_runs_as_interrupted(tmp_path, stop):
    """SIGINT (Ctrl-C) or SIGTERM (``kill``) to a launcher with a worker mid-run: the worker stops, its run
    is recorded as interrupted, one line on stderr says how to resume, and there is no traceback anywhere."""
    output = tmp_path / "out"
    grid = tmp_path / "long_fp.yaml"  # one FP run of 4,000 epochs: never done when the signal comes
    smoke = (REPO / "benchmarks/grids/smoke.yaml").read_text()
    grid.write_text(smoke.replace("fp: {epochs: 2", "fp: {epochs: 4000"))
    command = [sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", str(grid), "--methods", "fp",
               "--launcher", "local", "--output", str(output), "--no-sync"]
    # SIGINT back to its default in the child: a shell's background job (how CI may start the suite)
    # ignores SIGINT, the launcher would inherit that, and Python then installs no KeyboardInterrupt at all
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    running = None
    while running is None and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.5)
        running = next((d for d in map(RunDir, sorted((output / "runs").glob("*")))
                        if d.metrics_path.exists() and d.state() is RunState.RUNNING), None)
    assert running is not None, "the FP run never got to its first epoch"
    worker = json.loads(running.heartbeat_path.read_text())["pid"]
    launcher.send_signal(stop)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "resume with: " in lines[0]
    assert "run_matrix.py --grid" in lines[0]
    assert "Traceback" not in out + err
    assert running.state() is RunState.INTERRUPTED
    assert running.read_failure()["interrupted"] is True
    status = Path(f"/proc/{worker}/status")
    assert not status.exists() or "\nState:\tZ" in status.read_text()  # gone (or a zombie awaiting init)
    assert not list(output.rglob("*.tmp"))


def test_the_view_follows_ptq_and_tta_runs_too(tmp_path):
    """A grid of FP, post-training and test-time adaptation runs (the TTA spec has no recipe of its own)."""
    from benchmarks.matrix.grids import parse_grid

    grid = parse_grid({
        "name": "mixed", "methods": ["fp", "rtn"], "bits": ["4/4"], "seeds": [0],
        "tasks": [{"dataset": "optdigits", "archs": ["dann_digits"], "recipe": "r"}],
        "recipes": {"r": {"full": {"fp": {"epochs": 2}, "qat": {"epochs": 1}}}},
        "tta": {"methods": ["source"], "parents": ["rtn"], "streams": {"full": {"size": 10}}}})
    specs = expand(grid, "full", Filters())
    assert len(specs) == 3
    output = tmp_path / "out"
    for spec in specs:
        _start(output, spec, 0)
    snap = take_snapshot(specs, output)
    assert len(snap.running) == 3 and sorted(r.epochs for r in snap.running) == [1, 2, 2]
