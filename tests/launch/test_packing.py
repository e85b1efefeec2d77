"""Several runs per GPU: packs of requests (grouping, dependencies), and N = 4 real runs in one job as four
processes — they finish with the records of unpacked runs, and a failing member takes down no other."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from benchmarks.launch.job import RunJob
from benchmarks.launch.options import LaunchOptions
from benchmarks.launch.packing import (
    PACK_PREFIX,
    PackedJob,
    PackFailed,
    launch_packed,
    members_of,
    pack_requests,
)
from benchmarks.launch.registry import get_launcher
from benchmarks.launch.requests import JobRequest
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec

FP = Recipe(epochs=2, batch_size=64, lr=0.05, schedule="cosine", steps_per_epoch=3)


def _noop() -> None:
    pass


def _write(path: str) -> None:
    Path(path).write_text(str(os.getpid()))


def _boom() -> None:
    raise ValueError("member broke")


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_pack_runs_members_as_processes_and_reports_each_failure(tmp_path):
    files = [str(tmp_path / f"m{i}") for i in range(2)]
    members = [("a", _write, (files[0],)), ("b", _boom, ()), ("c", _kill_self, ()),
               ("d", _write, (files[1],))]
    with pytest.raises(PackFailed) as info:
        PackedJob()(members)
    assert str(info.value) == ("2 of 4 packed runs failed: b: ValueError: member broke; "
                               "c: member process ended with exit code -9")
    pids = {Path(f).read_text() for f in files}  # the others finished, each in a process of its own
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_packs_keep_dependencies_and_size():
    requests = [JobRequest("fp", _noop)] + [JobRequest(f"q{i}", _noop, depends_on="fp") for i in range(5)]
    requests.append(JobRequest("other", _noop))
    packs = pack_requests(requests, 4)
    assert [members_of(p.key) for p in packs] == [["fp", "other"], ["q0", "q1", "q2", "q3"], ["q4"]]
    assert [p.depends_on for p in packs] == [None, packs[0].key, packs[0].key]
    assert all(p.key.startswith(PACK_PREFIX) for p in packs)
    assert pack_requests(requests, 1) == requests
    with pytest.raises(ValueError, match=r"^invalid runs_per_gpu 0; expected an integer >= 1$"):
        pack_requests(requests, 0)


def _spec(seed: int, arch: str = "dann_digits") -> RunSpec:
    return RunSpec(task=TaskSpec("optdigits"), arch=arch, method="fp", recipe=FP, seed=seed)


def _request(spec: RunSpec, output) -> JobRequest:
    return JobRequest(spec.run_id, RunJob(), (spec.to_dict(), str(output), None, None, "cpu"))


@pytest.mark.slow
def test_four_packed_runs_match_unpacked_runs_and_survive_a_failing_member(tmp_path):
    good = [_spec(seed) for seed in range(3)]
    bad = _spec(0, arch="no_such_arch")
    packed_out, single_out = tmp_path / "packed", tmp_path / "single"
    lines: list[str] = []

    def options(output):
        return LaunchOptions(folder=output / "jobs", poll_s=0.05, log=lines.append,
                             succeeded=lambda key: RunDir.of(output, key).is_done())

    requests = [_request(s, packed_out) for s in good + [bad]]
    report = launch_packed(get_launcher("debug"), requests, options(packed_out), runs_per_gpu=4)
    assert "packing 4 runs into 1 jobs of at most 4 (runs_per_gpu)" in lines
    assert sorted(report.launched) == sorted(r.key for r in requests)
    assert list(report.failed) == [bad.run_id]  # only the failing member, with the pack's error
    assert "no_such_arch" in report.failed[bad.run_id]
    assert RunDir.of(packed_out, bad.run_id).state() is RunState.FAILED
    single = launch_packed(get_launcher("debug"), [_request(s, single_out) for s in good],
                           options(single_out), runs_per_gpu=1)
    assert not single.failed
    for spec in good:
        packed_dir, single_dir = RunDir.of(packed_out, spec.run_id), RunDir.of(single_out, spec.run_id)
        assert packed_dir.state() is RunState.DONE
        drop = ("train_s", "eval_s", "epoch_s", "time_s")  # wall-clock fields differ between any two runs
        assert [{k: v for k, v in row.items() if k not in drop} for row in packed_dir.read_metrics()] == \
            [{k: v for k, v in row.items() if k not in drop} for row in single_dir.read_metrics()]
        assert json.loads(packed_dir.result_path.read_text())["metrics"] == \
            json.loads(single_dir.result_path.read_text())["metrics"]
