"""``run_matrix.py --logs RUN_ID [--follow]``: print one run's ``log.txt``, or tail it while the run runs.

A run is named by its id or any unique prefix of it, like a git commit."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from benchmarks.run.rundir import RunDir, RunState, run_dirs

FOLLOW_POLL_S = 0.5


def find_run(output: Path, prefix: str) -> RunDir:
    """The run directory whose id is ``prefix`` or starts with it; a one-line ValueError otherwise."""
    if not prefix:
        raise ValueError("--logs needs a run id (or a unique prefix of one)")
    matches = [d for d in run_dirs(output) if d.run_id.startswith(prefix)]
    exact = [d for d in matches if d.run_id == prefix]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = [d.run_id for d in run_dirs(output)]
        hint = f"{len(known)} runs there, e.g. {', '.join(known[:3])}" if known else "it has no runs"
        raise ValueError(f"unknown run id {prefix!r} under {output}/runs ({hint})")
    raise ValueError(f"run id prefix {prefix!r} is ambiguous: {', '.join(d.run_id for d in matches[:5])}")


def print_log(directory: RunDir, follow: bool = False, stream: TextIO | None = None,
              poll_s: float = FOLLOW_POLL_S, max_wait_s: float | None = None) -> int:
    """Print the run's log; with ``follow`` keep printing new lines until the run is no longer running
    (done, failed, interrupted) or Ctrl-C. Returns the exit status (0)."""
    stream = stream or sys.stdout
    position = 0
    started = time.monotonic()
    if not follow and not directory.log_path.exists():
        print(f"(run {directory.run_id} has no log yet: {directory.state().value})", file=stream)
        return 0
    while True:
        position = _print_new(directory.log_path, position, stream)
        if not follow:
            return 0
        running = directory.state() in (RunState.RUNNING, RunState.NOT_LAUNCHED)
        if not running or (max_wait_s is not None and time.monotonic() - started > max_wait_s):
            _print_new(directory.log_path, position, stream)
            print(f"(run {directory.run_id} is {directory.state().value})", file=stream, flush=True)
            return 0
        try:
            time.sleep(poll_s)
        except KeyboardInterrupt:
            return 0


def _print_new(path: Path, position: int, stream: TextIO) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(position)
            chunk = handle.read()
    except FileNotFoundError:
        return position
    end = chunk.rfind(b"\n") + 1  # whole lines only: a line being written is printed on the next poll
    if end:
        stream.write(chunk[:end].decode(errors="replace"))
        stream.flush()
    return position + end
