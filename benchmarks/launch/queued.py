"""Which runs are still queued in a SLURM job of an earlier launch, so a launch does not submit them again.

The ``slurm`` launcher records each run's job (``RunDir.write_queued``: ``<array>_<task>`` and the submission
time). A later launch (a second launcher, or one restarted after SIGKILL) asks squeue once about every
recorded job of the runs it would submit; a run whose job is alive is left to that job. When squeue does not
answer (SLURM down), nothing is known alive and the runs are submitted as before: a run is never lost, at
worst it gets a duplicate job (the claim still trains it once).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterable

from benchmarks.run.rundir import RunDir, RunState

# squeue's states of a job that may still train its run (a job that ended has left squeue or shows an end
# state such as COMPLETED, FAILED, CANCELLED, TIMEOUT, which are not here)
ALIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                          "REQUEUE_FED", "SUSPENDED", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT"})

Squeue = Callable[[list[str]], subprocess.CompletedProcess]


def run_squeue(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["squeue", *args], capture_output=True, text=True, timeout=60)


def alive_jobs(job_ids: Iterable[str], squeue: Squeue | None = None) -> set[str] | None:
    """The ids among ``job_ids`` (``123`` or ``123_4``) whose job squeue shows alive, in one squeue call;
    None when squeue fails (not installed, controller down, time-out)."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return set()
    # -r: one line per array task, so a pending array's tasks show as 123_4 like the recorded ids
    args = ["--noheader", "-r", "--jobs", ",".join(wanted), "--format", "%i %T"]
    try:
        out = (squeue or run_squeue)(args)  # looked up at call time: unit tests replace run_squeue
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        # squeue exits 1 with "Invalid job id specified" when every listed job has left the queue
        return set() if "invalid job id" in (out.stderr or "").lower() else None
    alive = set()
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] in ALIVE_STATES:
            alive.add(fields[0])
    return alive & set(wanted)


def recorded_job(directory: RunDir, state: RunState) -> str | None:
    """The run's recorded job when that job would still train it: not for a done run, nor for one that
    failed after the job was submitted (the job then stops with FailedElsewhere, and this launch's retry is
    wanted)."""
    if state is RunState.DONE:
        return None
    record = directory.read_queued()
    if record is None:
        return None
    if state is RunState.FAILED:
        failure = directory.read_failure() or {}
        if float(failure.get("time", 0.0)) >= float(record.get("submitted", 0.0)):
            return None
    return str(record["job_id"])


def queued_elsewhere(output: Path, states: dict[str, RunState], log: Callable[[str], None],
                     squeue: Squeue | None = None) -> dict[str, str]:
    """Run id -> its alive job of an earlier launch, for the runs of ``states`` (run id -> state) that have
    one. One squeue call; when it fails, {} and one log line (every run is submitted as before)."""
    recorded = {run_id: job for run_id, state in states.items()
                if (job := recorded_job(RunDir.of(output, run_id), state)) is not None}
    alive = alive_jobs(recorded.values(), squeue)
    if alive is None:
        log(f"squeue did not answer: submitting runs without checking {len(recorded)} recorded jobs of "
            "earlier launches (some may be queued twice)")
        return {}
    return {run_id: job for run_id, job in recorded.items() if job in alive}


def wait_for_jobs(job_ids: Iterable[str], poll_s: float, sleep: Callable[[float], None],
                  squeue: Squeue | None = None) -> None:
    """Poll squeue until none of ``job_ids`` is alive (or squeue stops answering)."""
    remaining = set(job_ids)
    while remaining:
        alive = alive_jobs(remaining, squeue)
        if alive is None:
            return
        remaining = alive
        if remaining:
            sleep(poll_s)
