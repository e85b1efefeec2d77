"""A slurm launch does not submit again the runs whose job of an earlier launch is alive (unit tests: mocked
sbatch, as in test_slurm_mocked.py, and a fake squeue). Alive: left to that job, and a QAT run of such a
parent waits for the parent's recorded job; dead: submitted again; squeue failing: everything submitted, said
in one line. The real-cluster version is test_queued_jobs_slurm.py."""
from __future__ import annotations

import re
import subprocess

import pytest

import benchmarks.launch.queued as queued
from benchmarks.launch.queued import alive_jobs
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.matrix.launch import GridLaunch, launch_runs
from benchmarks.run.rundir import RunDir
from tests.launch.test_slurm_mocked import _flags, _profile
from tests.matrix.support import two_parent_grid


class FakeSqueue:
    """squeue that shows ``alive`` (job id -> state) and counts its calls; ``fail``: exits 1 (SLURM down)."""

    def __init__(self, alive: dict[str, str], fail: bool = False) -> None:
        self.alive, self.fail, self.calls = alive, fail, 0

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess:
        self.calls += 1
        if self.fail:
            return subprocess.CompletedProcess(args, 1, "", "slurm_load_jobs error: Unable to contact slurm "
                                                            "controller (connect failure)")
        asked = args[args.index("--jobs") + 1].split(",")
        rows = [f"{job} {self.alive[job]}" for job in asked if job in self.alive]
        if not rows:
            return subprocess.CompletedProcess(args, 1, "", "slurm_load_jobs error: Invalid job id specified")
        return subprocess.CompletedProcess(args, 0, "\n".join(rows) + "\n", "")


def test_alive_jobs_reads_states_and_tells_a_failing_squeue_apart():
    fake = FakeSqueue({"5_0": "PENDING", "5_1": "RUNNING", "6": "COMPLETING", "7": "COMPLETED"})
    assert alive_jobs(["5_0", "5_1", "6", "7", "8"], fake) == {"5_0", "5_1", "6"} and fake.calls == 1
    assert alive_jobs(["8", "9"], fake) == set()  # none known: "Invalid job id", not a failure
    assert alive_jobs(["5_0"], FakeSqueue({}, fail=True)) is None

    def missing(args):
        raise FileNotFoundError("squeue")
    assert alive_jobs(["5_0"], missing) is None
    assert alive_jobs([], FakeSqueue({}, fail=True)) == set()  # nothing to ask: no call


def _launch(specs, output, tmp_path, logs):
    return launch_runs(specs, "slurm", GridLaunch(output=output, grid="twoparents", wait=False,
                                                  slurm_profile=_profile(tmp_path, 8), log=logs.append))


def test_alive_jobs_are_not_resubmitted_and_dead_ones_are(tmp_path, sbatch, monkeypatch):
    specs = expand(load_grid(str(two_parent_grid(tmp_path, seeds=(0, 1)))), "full")
    output, logs = tmp_path / "out", []
    first = _launch(specs, output, tmp_path, logs)
    assert len(first.launched) == 6
    for spec in specs:  # each run records its job
        assert RunDir.of(output, spec.run_id).read_queued()["job_id"] == first.job_ids[spec.run_id]
    fp0 = next(s for s in specs if s.method == "fp" and s.seed == 0)
    seed0 = [s.run_id for s in specs if s.seed == 0]
    # seed 0's jobs are alive, seed 1's have ended (gone from squeue)
    fake = FakeSqueue({first.job_ids[r]: "PENDING" for r in seed0})
    monkeypatch.setattr(queued, "run_squeue", fake)
    logs.clear()
    second = _launch(specs, output, tmp_path, logs)
    assert fake.calls == 1
    assert sorted(second.skipped) == sorted(seed0)
    assert sorted(second.launched) == sorted(s.run_id for s in specs if s.seed == 1)
    assert "already queued: 3 runs in jobs of an earlier launch" in "\n".join(logs)
    # only seed 0's FP parent alive: its QAT runs are submitted, after the parent's recorded job
    fake = FakeSqueue({first.job_ids[fp0.run_id]: "RUNNING"})
    monkeypatch.setattr(queued, "run_squeue", fake)
    third = _launch(specs, output, tmp_path, logs)
    assert third.skipped == [fp0.run_id] and len(third.launched) == 5 and third.blocked == {}
    for spec in specs:
        if spec.seed == 0 and spec.method != "fp":
            flags = _flags(sbatch.scripts[third.job_ids[spec.run_id].split("_")[0]])
            assert flags["dependency"] == f"afterok:{first.job_ids[fp0.run_id]}"
            assert flags["kill-on-invalid-dep"] == "yes"


def test_squeue_failing_submits_everything_and_says_so(tmp_path, sbatch, monkeypatch):
    specs = expand(load_grid(str(two_parent_grid(tmp_path, seeds=(0,)))), "full")
    output, logs = tmp_path / "out", []
    first = _launch(specs, output, tmp_path, logs)
    monkeypatch.setattr(queued, "run_squeue", FakeSqueue({j: "PENDING" for j in first.job_ids.values()},
                                                         fail=True))
    logs.clear()
    again = _launch(specs, output, tmp_path, logs)
    assert len(again.launched) == 3 and again.skipped == []
    said = [line for line in logs if "squeue did not answer" in line]
    assert len(said) == 1 and re.search(r"without checking 3 recorded jobs", said[0])


def test_a_job_submitted_before_its_runs_failure_does_not_count(tmp_path):
    """The earlier job will stop with FailedElsewhere (test_job_outcome_once.py): this launch retries."""
    directory = RunDir(tmp_path / "runs" / "r1")
    directory.write_queued("12_3")
    directory.write_failure("ValueError: boom", "")  # after the job was submitted
    assert queued.queued_elsewhere(tmp_path, {"r1": directory.state()}, print,
                                   FakeSqueue({"12_3": "PENDING"})) == {}
    directory.write_queued("13_0")  # a job submitted after the failure retries it: it counts
    assert queued.queued_elsewhere(tmp_path, {"r1": directory.state()}, print,
                                   FakeSqueue({"13_0": "PENDING"})) == {"r1": "13_0"}


def test_a_qat_run_cancelled_with_its_parents_earlier_job_is_blocked(tmp_path, monkeypatch):
    """The parent's earlier job fails, SLURM cancels the QAT run's job (afterok, kill-on-invalid-dep): the
    run is reported blocked with the parent's error, as when the parent is launched with it."""
    import benchmarks.matrix.launch as matrix_launch
    from benchmarks.launch.options import LaunchReport

    specs = expand(load_grid(str(two_parent_grid(tmp_path, seeds=(0,), methods="fp, lsq"))), "full")
    fp, lsq = sorted(specs, key=lambda s: s.method != "fp")
    output = tmp_path / "out"
    RunDir.of(output, fp.run_id).write_queued("40_0")
    monkeypatch.setattr(queued, "run_squeue", FakeSqueue({"40_0": "PENDING"}))

    def cancelled(launcher, requests, options, runs_per_gpu):
        assert [r.after_job for r in requests] == ["40_0"]
        RunDir.of(output, fp.run_id).write_failure("RuntimeError: bad data", "")  # the parent's job failed
        return LaunchReport(launched=[lsq.run_id], failed={lsq.run_id: "job 41 ended without finishing"})
    monkeypatch.setattr(matrix_launch, "launch_packed", cancelled)
    report = launch_runs(specs, "slurm", GridLaunch(output=output, grid="t", log=lambda _: None,
                                                    slurm_profile=_profile(tmp_path, 8), wait=False))
    assert report.failed == {}
    assert report.blocked == {lsq.run_id: f"FP parent {fp.run_id} failed: RuntimeError: bad data"}


def test_waiting_polls_until_the_earlier_jobs_leave_the_queue():
    fake = FakeSqueue({"5_0": "RUNNING", "5_1": "PENDING"})
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # one job ends after each poll
        sleeps.append(seconds)
        fake.alive.pop(min(fake.alive))
    queued.wait_for_jobs(["5_0", "5_1"], 2.0, sleep, fake)
    assert sleeps == [2.0, 2.0] and fake.calls == 3
    down = FakeSqueue({"5_0": "RUNNING"}, fail=True)
    queued.wait_for_jobs(["5_0"], 2.0, lambda _: pytest.fail("slept with squeue down"), down)
    assert down.calls == 1  # squeue down: stop watching (the run directories still say what happened)


def test_the_runs_of_a_packed_job_record_its_job(tmp_path, sbatch):
    specs = expand(load_grid(str(two_parent_grid(tmp_path, seeds=(0,)))), "full")
    output = tmp_path / "out"
    report = launch_runs(specs, "slurm", GridLaunch(output=output, grid="twoparents", wait=False,
                                                    runs_per_gpu=2, slurm_profile=_profile(tmp_path, 8),
                                                    log=lambda _: None))
    fp, qat = [s for s in specs if s.method == "fp"], [s for s in specs if s.method != "fp"]
    recorded = {s.run_id: RunDir.of(output, s.run_id).read_queued()["job_id"] for s in specs}
    assert recorded == report.job_ids and len({recorded[s.run_id] for s in qat}) == 1  # one pack, one job
    assert recorded[fp[0].run_id] != recorded[qat[0].run_id]
