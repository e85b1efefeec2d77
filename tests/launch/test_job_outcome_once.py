"""A run is tried once per launch: a job submitted before another job of the same run failed it (a second
launcher's job, a killed launcher's job still queued) reports that failure instead of training the run again;
a launch made after the failure retries it. (The soak makes such duplicate jobs: a second launcher and a
restarted one resubmit every run whose job is still queued.)"""
from __future__ import annotations

import signal

import pytest

from benchmarks.launch.job import RunJob
from benchmarks.run.divergence import Diverged
from benchmarks.run.rundir import FailedElsewhere, RunDir, RunState
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec

DIVERGING = Recipe(epochs=2, batch_size=64, lr=1e12, schedule="constant", steps_per_epoch=4)


@pytest.fixture(autouse=True)
def _keep_sigterm():
    """RunJob installs the worker's SIGTERM handler; give pytest its own back."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def _attempts(directory: RunDir) -> int:
    return directory.log_path.read_text().count("FAILED: Diverged: diverged at epoch 1 step")


def test_a_job_launched_before_another_jobs_failure_does_not_train_again(tmp_path):
    spec = RunSpec(task=TaskSpec("optdigits"), arch="dann_digits", method="fp", recipe=DIVERGING)
    args = (spec.to_dict(), str(tmp_path), None, None, "cpu")
    queued = RunJob()  # e.g. a second launcher's job, waiting in the queue
    with pytest.raises(Diverged, match=r"diverged at epoch 1 step \d"):
        RunJob()(*args)  # the first job trains the run, which fails
    directory = RunDir.of(tmp_path, spec.run_id)
    with pytest.raises(FailedElsewhere, match=r"failed in another job .*: Diverged: diverged at epoch 1"):
        queued(*args)
    assert _attempts(directory) == 1 and directory.state() is RunState.FAILED
    with pytest.raises(Diverged):  # a launch made after the failure retries the run on purpose
        RunJob()(*args)
    assert _attempts(directory) == 2
