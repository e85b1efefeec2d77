"""The run directory: the on-disk record that is the truth about a run.

Layout of ``<output>/runs/<run_id>/``:
  spec.json      the full spec (+ run id, grid, schema version); written first
  metrics.jsonl  one JSON line per finished epoch, rewritten atomically from the checkpoint's history
  checkpoint.pt  model/optimizer/scheduler/method/RNG state at the last finished epoch (removed once done)
  final.pt       the final model weights (QAT runs start from their FP parent's final.pt)
  heartbeat      time, host and pid of the process working on it, refreshed every epoch
  result.json    final metrics, layer report, timings, environment
  failed.json    the error and traceback of the last failed attempt
  done           written last, atomically: the run is finished
State is read from these files only; scheduler state is never trusted.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Any

HEARTBEAT_STALE_S = 15 * 60


class RunState(str, Enum):
    NOT_LAUNCHED = "not_launched"
    RUNNING = "running"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    DONE = "done"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def run_dir(output: Path, run_id: str) -> Path:
    return Path(output) / "runs" / run_id


def run_state(directory: Path) -> RunState:
    directory = Path(directory)
    if (directory / "done").exists():
        return RunState.DONE
    if not directory.exists():
        return RunState.NOT_LAUNCHED
    beat = directory / "heartbeat"
    if beat.exists() and time.time() - beat.stat().st_mtime < HEARTBEAT_STALE_S and _heartbeat_alive(beat):
        return RunState.RUNNING
    if (directory / "failed.json").exists():
        return RunState.FAILED
    if (directory / "checkpoint.pt").exists() or (directory / "metrics.jsonl").exists():
        return RunState.INCOMPLETE
    return RunState.NOT_LAUNCHED


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


def write_heartbeat(directory: Path, finished: bool = False) -> None:
    atomic_write_json(directory / "heartbeat", {
        "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "finished": finished,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    })


def write_metrics(directory: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(directory / "metrics.jsonl", "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))


def read_metrics(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mark_done(directory: Path) -> None:
    atomic_write_text(directory / "done", time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def read_result(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / "result.json"
    return read_json(path) if path.exists() and (Path(directory) / "done").exists() else None
