"""The run directory: the on-disk record that is the truth about a run, owned by :class:`RunDir`.

No other module joins these file names itself. Torch-free (``analysis/`` imports it). Layout of
``<output>/runs/<run_id>/``:
  spec.json      the full spec (+ run id, grid, schema version); written first
  metrics.jsonl  one JSON line per finished epoch, rewritten atomically from the checkpoint's history
  checkpoint.pt  model/optimizer/scheduler/method/RNG state at the last finished epoch (removed once done)
  final.pt       the final model weights (QAT runs start from their FP parent's final.pt)
  heartbeat      time, host, pid and SLURM job of the process working on it, refreshed every epoch
  claim          an empty lock file: the process training the run holds an exclusive flock on it, so two
                 launchers, a relaunch or a requeued job never train one run at once; the kernel releases the
                 lock when its owner dies, however it dies, so a dead owner's claim is taken over at once
  result.json    final metrics, layer report, timings, environment
  failed.json    the error and traceback of the last failed attempt
  done           written last, atomically: the run is finished
  log.txt        the run's log lines (what its worker printed)
  queued.json    the SLURM job (``<array>_<task>``) last submitted for the run and when: a later launch asks
                 squeue about it before submitting the run again (launch/queued.py)
State is read from these files only; scheduler state is never trusted. Every file is written under a
unique temporary name and renamed into place (after fsync), with the user's umask (a lab's group can read it).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

from benchmarks.run.result import ResultRecord, ResultSchemaError

HEARTBEAT_STALE_S = 15 * 60


class RunState(str, Enum):
    NOT_LAUNCHED = "not_launched"
    RUNNING = "running"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    # stopped on purpose (Ctrl-C, SIGTERM from SLURM): resumes when launched again
    INTERRUPTED = "interrupted"
    CORRUPT = "corrupt"  # a done marker without a readable, schema-valid result.json
    DONE = "done"


class RunClaimed(RuntimeError):
    """Another live process holds the run's claim: it is being trained elsewhere."""


class FailedElsewhere(RuntimeError):
    """Another job of the same run failed it for good after this job was submitted (two launchers, a
    relaunch while the first launch's jobs were queued): that failure is this job's outcome too."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# mkstemp creates files 0600; records are shared with a lab's group on a cluster file system, so they get the
# mode a plain open() would give them.
FILE_MODE = 0o666 & ~_umask()


def unique_temp(path: Path) -> Path:
    """A fresh, unique temporary file beside ``path`` (same file system, so a rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    return Path(tmp)


def atomic_write_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a unique temporary file, fsync it, then rename it over ``path``."""
    tmp = unique_temp(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a unique temp file in the same directory and rename, so readers never see a partial file."""
    atomic_write_with(Path(path), lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


RUNS = "runs"


class RunDir:
    """One run's directory: the path of each of its files, its state, and atomic reads and writes."""

    SPEC, METRICS, CHECKPOINT, FINAL = "spec.json", "metrics.jsonl", "checkpoint.pt", "final.pt"
    RESULT, FAILED, HEARTBEAT, DONE, LOG = "result.json", "failed.json", "heartbeat", "done", "log.txt"
    CLAIM, QUEUED = "claim", "queued.json"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, output: Path | str, run_id: str) -> "RunDir":
        return cls(runs_root(output) / run_id)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def run_id(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------------------------------ paths
    @property
    def spec_path(self) -> Path:
        return self.path / self.SPEC

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def final_path(self) -> Path:
        return self.path / self.FINAL

    @property
    def result_path(self) -> Path:
        return self.path / self.RESULT

    @property
    def failed_path(self) -> Path:
        return self.path / self.FAILED

    @property
    def heartbeat_path(self) -> Path:
        return self.path / self.HEARTBEAT

    @property
    def done_path(self) -> Path:
        return self.path / self.DONE

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def claim_path(self) -> Path:
        return self.path / self.CLAIM

    # ------------------------------------------------------------------------------------------ state
    def exists(self) -> bool:
        return self.path.is_dir()

    def is_done(self) -> bool:
        return self.done_path.exists()

    def state(self) -> RunState:
        if self.is_done():
            return RunState.DONE if self.result_problem() is None else RunState.CORRUPT
        if not self.path.exists():
            return RunState.NOT_LAUNCHED
        beat = self.heartbeat_path
        fresh = beat.exists() and time.time() - beat.stat().st_mtime < HEARTBEAT_STALE_S
        if fresh and _heartbeat_alive(beat):
            return RunState.RUNNING
        failure = self.read_failure() if self.failed_path.exists() else None
        if failure is not None:
            return RunState.INTERRUPTED if failure.get("interrupted") else RunState.FAILED
        if self.checkpoint_path.exists() or self.metrics_path.exists():
            return RunState.INCOMPLETE
        return RunState.NOT_LAUNCHED

    def result_problem(self) -> str | None:
        """Why a done run's result cannot be used (one line naming the file), or None when it can."""
        try:
            ResultRecord.from_dict(read_json(self.result_path), source=str(self.result_path))
        except FileNotFoundError:
            return f"{self.result_path} is missing"
        except (OSError, ValueError) as err:  # ResultSchemaError and JSONDecodeError are ValueErrors
            text = str(err) if isinstance(err, ResultSchemaError) else f"{self.result_path}: {err}"
            return text.splitlines()[0] if text else repr(err)
        return None

    def identity_problem(self) -> str | None:
        """Why this directory is not the run its name says (copied or renamed: its spec.json names another
        run), or None when it is. A copy must not count as a second run of the same spec."""
        try:
            record = read_json(self.spec_path)
        except (OSError, ValueError) as err:
            return f"{self.spec_path} is unreadable ({type(err).__name__}: {err})"
        recorded = record.get("run_id") if isinstance(record, dict) else None
        if recorded != self.run_id:
            return f"{self.path} holds run {recorded} (its spec.json), not {self.run_id}: copied or renamed"
        return None

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the run's claim while training it; raises RunClaimed when a live process holds it.

        An exclusive ``flock`` on the claim file, held for as long as the ``with`` block runs: released by
        the kernel when the owner exits or dies (SIGKILL, node loss with NFS lock recovery), so a stale claim
        is never left behind to expire. Never open the claim file elsewhere: on NFS, flock is emulated with
        POSIX locks, which a process drops when it closes any descriptor of the file.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.claim_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self.read_heartbeat() or {}
            raise RunClaimed(f"run {self.run_id} is being trained by pid {owner.get('pid')} on "
                             f"{owner.get('host')} (SLURM job {owner.get('slurm_job_id')})") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------------------------------------ records
    def read_spec(self) -> dict[str, Any] | None:
        """The spec record (``{"schema_version", "run_id", "grid", "spec", "provenance"}``), or None."""
        return read_json(self.spec_path) if self.spec_path.exists() else None

    def write_spec(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.spec_path, record)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in history)
        atomic_write_text(self.metrics_path, lines)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_result(self, record: ResultRecord) -> None:
        atomic_write_json(self.result_path, record.to_dict())

    def read_result(self) -> ResultRecord | None:
        """The result of a finished run (None until ``done`` exists); raises ResultSchemaError (a ValueError
        naming the file) for an unreadable one."""
        if not self.is_done() or not self.result_path.exists():
            return None
        return ResultRecord.from_dict(read_json(self.result_path), source=str(self.result_path))

    def write_failure(self, error: str, trace: str, interrupted: bool = False) -> None:
        """Record why the last attempt stopped; ``interrupted`` (Ctrl-C, SIGTERM) means "resume me", not
        "I am broken"."""
        atomic_write_json(self.failed_path, {"run_id": self.run_id, "error": error, "traceback": trace,
                                             "time": time.time(), "interrupted": interrupted})

    def read_failure(self) -> dict[str, Any] | None:
        """The failure record, or None (also for an unreadable one: a torn write counts as no record)."""
        try:
            data = read_json(self.failed_path)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def raise_if_failed_since(self, since: float) -> None:
        """Raise FailedElsewhere when the run failed for good (not interrupted) at or after ``since``.

        A launch retries a failed run on purpose; a job submitted before that failure was meant to train the
        run once, which the failing job already did, so it must not train it again."""
        failure = self.read_failure() if self.failed_path.exists() else None
        if failure and not failure.get("interrupted") and float(failure.get("time", 0.0)) >= since:
            raise FailedElsewhere(f"run {self.run_id} failed in another job after this one was submitted: "
                                  f"{failure.get('error')}")

    def clear_failure(self) -> None:
        self.failed_path.unlink(missing_ok=True)

    def write_heartbeat(self, finished: bool = False) -> None:
        atomic_write_json(self.heartbeat_path, {
            "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "finished": finished,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        })

    def read_heartbeat(self) -> dict[str, Any] | None:
        try:
            return read_json(self.heartbeat_path)
        except (OSError, ValueError):
            return None

    def append_log(self, line: str) -> None:
        """Append one line to the run's ``log.txt`` (what its worker printed about it, across attempts)."""
        with open(self.log_path, "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.rstrip()}\n")

    def write_queued(self, job_id: str) -> None:
        """Record the SLURM job just submitted for this run (one task of an array: ``<array>_<task>``)."""
        atomic_write_json(self.path / self.QUEUED, {"job_id": job_id, "submitted": time.time()})

    def read_queued(self) -> dict[str, Any] | None:
        """The last ``write_queued`` record ({"job_id", "submitted"}), or None (none, or unreadable)."""
        try:
            data = read_json(self.path / self.QUEUED)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "job_id" in data else None

    def mark_done(self) -> None:
        atomic_write_text(self.done_path, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def runs_root(output: Path | str) -> Path:
    """``<output>/runs``: where every run directory of an output lives."""
    return Path(output) / RUNS


def run_dirs(output: Path | str) -> list[RunDir]:
    """Every run directory under an output (sorted by run id), whatever its state."""
    root = runs_root(output)
    return [RunDir(p) for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []


def _heartbeat_alive(beat: Path) -> bool:
    """On this host a dead pid means the run died (e.g. SIGKILL); elsewhere trust the timestamp."""
    try:
        info = json.loads(beat.read_text())
    except (OSError, ValueError):
        return False
    if info.get("host") != socket.gethostname() or info.get("finished"):
        return not info.get("finished", False)
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return False
    status = Path(f"/proc/{info['pid']}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())
