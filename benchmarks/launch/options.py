"""What every launcher takes besides its requests (``LaunchOptions``) and what it gives back
(``LaunchReport``): the one signature of the registry is ``launcher(requests, options) -> LaunchReport``."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.launch.requests import JobRequest

Log = Callable[[str], None]
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(: |$)")  # "ValueError: ...", "KeyboardInterrupt"


@dataclass
class LaunchOptions:
    """How to launch. ``succeeded(key)``, when given, is the truth about a finished job (e.g. its run
    directory's ``done`` marker), asked instead of trusting the scheduler; without it a job succeeded when it
    raised nothing. ``progress()``, when given, is logged after each job that ends (e.g. counts by state)."""

    folder: Path  # submitit's pickles and logs (SLURM: one sub-folder per job)
    workers: int = 1  # local: jobs in flight at once (one GPU each when there are GPUs)
    slurm_profile: str = "local"  # slurm/profiles/<name>.yaml or a path
    job_name: str = "qbench"
    wait: bool = True  # slurm: poll until every job has ended (pool launchers always wait)
    poll_s: float = 5.0
    log: Log = print
    succeeded: Callable[[str], bool] | None = None
    progress: Callable[[], str] | None = None
    # slurm: called with (key, job id) as each request is submitted (the matrix records it: queued.json)
    submitted: Callable[[str, str], None] | None = None


@dataclass
class LaunchReport:
    """Keys by outcome. ``blocked`` holds the requests never started because what they wait for failed (or
    was itself blocked), each with its reason; ``skipped`` is for callers that leave requests out (e.g. runs
    already done), launchers never fill it."""

    launched: list[str] = field(default_factory=list)
    job_ids: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line error
    blocked: dict[str, str] = field(default_factory=dict)  # key -> why it cannot start
    skipped: list[str] = field(default_factory=list)

    def hold_back(self, request: JobRequest) -> bool:
        """Record ``request`` as blocked if what it waits for failed or is blocked; True if it was."""
        dependency = request.depends_on
        if dependency in self.failed:
            self.blocked[request.key] = f"{dependency} failed: {self.failed[dependency]}"
        elif dependency in self.blocked:
            self.blocked[request.key] = f"{dependency} is blocked ({self.blocked[dependency]})"
        else:
            return False
        return True


Launcher = Callable[[Sequence[JobRequest], LaunchOptions], LaunchReport]


def error_line(error: BaseException | str, limit: int = 300) -> str:
    """The line that says what went wrong. An exception raised in this process (the debug launcher): its type
    and first line. submitit's FailedJobError (the worker's traceback between two ``----`` rules, then the log
    paths): the traceback's last ``Type: message`` line. Anything else: its last line."""
    from submitit.core.utils import UncompletedJobError

    if isinstance(error, BaseException) and not isinstance(error, UncompletedJobError):
        first = (str(error).strip().splitlines() or [""])[0]
        return f"{type(error).__name__}: {first}"[:limit]
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    rules = [i for i, line in enumerate(lines) if set(line.strip()) == {"-"}]
    if len(rules) >= 2 and rules[-1] > rules[-2] + 1:
        trace = lines[rules[-2] + 1 : rules[-1]]
        # the exception line starts at column 0; a message's own later lines rarely look like one
        lines = [line for line in trace if _EXCEPTION_LINE.match(line)] or trace
    return (lines[-1].strip() if lines else "unknown error")[:limit]


def job_outcome(key: str, job, options: LaunchOptions) -> str | None:
    """None when the finished submitit ``job`` of request ``key`` succeeded, else its one-line error.

    ``exception()`` rather than ``result()``: the debug executor's ``result()`` opens a post-mortem debugger
    on failure, and a launch logs a failed job and goes on. With ``options.succeeded`` the verdict is its
    (e.g. the run directory), the job's own error only the explanation."""
    try:
        error = job.exception()
    except Exception as uncompleted:  # noqa: BLE001 - never completed: cancelled, killed, out of time
        error = uncompleted
    line = None if error is None else error_line(error)
    if options.succeeded is None:
        return line
    if options.succeeded(key):
        return None
    return line or f"job {job.job_id} ended without finishing {key}"
