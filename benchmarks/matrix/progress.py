"""The live view of a launch: where each run of a grid stands, read from its run directory (never from the
scheduler), so the local and SLURM launchers show the same thing.

A :class:`Monitor` thread takes a :class:`Snapshot` every few seconds and hands it to a view: ``LiveView``
(a terminal: tqdm bars, one for the grid and one per running run with its epoch) or ``PlainView`` (CI logs:
one line per event: started, epoch, done, failed with its reason, plus a counts line now and then).
"""
from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, TextIO

from benchmarks.matrix.status import BLOCKED, run_statuses
from benchmarks.run.labels import bits_label
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec

PENDING_STATES = (RunState.NOT_LAUNCHED.value, RunState.INCOMPLETE.value, RunState.INTERRUPTED.value)


@dataclass(frozen=True)
class RunningRun:
    run_id: str
    label: str
    epoch: int  # epochs finished (metrics.jsonl lines)
    epochs: int  # epochs of the recipe
    elapsed_s: float  # since the run directory was created


@dataclass
class Snapshot:
    """Counts by status, the running runs, failed runs with their reasons, and an ETA."""

    counts: Counter = field(default_factory=Counter)
    running: list[RunningRun] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    total: int = 0
    eta_s: float | None = None
    eta_source: str = ""

    @property
    def pending(self) -> int:
        return sum(self.counts[s] for s in PENDING_STATES)

    def counts_line(self) -> str:
        eta = "" if self.eta_s is None else f" | ETA {format_duration(self.eta_s)} ({self.eta_source})"
        return (f"pending {self.pending} | running {self.counts[RunState.RUNNING.value]} | "
                f"done {self.counts[RunState.DONE.value]} | failed {self.counts[RunState.FAILED.value]} | "
                f"blocked {self.counts[BLOCKED]} | total {self.total}{eta}")


def run_label(spec: RunSpec) -> str:
    return (f"{spec.method} {bits_label(spec.w_bits, spec.a_bits, spec.method)} {spec.task.label} "
            f"{spec.arch} s{spec.seed}")


def _epochs_of(spec: RunSpec) -> int:
    """Epochs a run trains; a test-time adaptation run (one pass over its stream) counts as one."""
    return spec.recipe.epochs if isinstance(spec, RunSpec) else 1


def take_snapshot(specs: list[RunSpec], output: Path, workers: int = 1, now: float | None = None) -> Snapshot:
    """Read every run's directory once. The ETA is the cost model's estimate of what is still to go
    (``matrix/cost.py``: each run's steps, images and method), scaled by the pace the finished runs showed
    (the median of their ``result.json`` wall time over their own estimate; those of the same method when
    some have finished) and divided over the workers.
    Scaling each run's own estimate, not counting runs, keeps the ETA right when runs differ in length (a
    2,000-step ERM parent and its 500-step quantized children). Before any run has finished, the unscaled
    estimate stands in."""
    now = time.time() if now is None else now
    statuses = run_statuses(specs, output)
    snap = Snapshot(counts=Counter(status for status, _ in statuses.values()), total=len(specs))
    finished: list[tuple[float, RunSpec]] = []  # (wall time, spec) of the finished runs
    for spec in specs:
        status, reason = statuses[spec.run_id]
        directory = RunDir.of(output, spec.run_id)
        if status == RunState.RUNNING.value:
            started = _mtime(directory.spec_path) or now
            snap.running.append(RunningRun(spec.run_id, run_label(spec), _epochs_done(directory),
                                           _epochs_of(spec), max(0.0, now - started)))
        elif status == RunState.FAILED.value:
            snap.failed[spec.run_id] = reason or "no error recorded"
        elif status == RunState.DONE.value:
            snap.done.add(spec.run_id)
            wall = _wall_s(directory)
            if wall is not None:
                finished.append((wall, spec))
    to_go = [s for s in specs if statuses[s.run_id][0] in PENDING_STATES + (RunState.RUNNING.value,)]
    if to_go:
        snap.eta_s, snap.eta_source = _eta(to_go, snap.running, finished, max(1, workers))
    return snap


def _eta(to_go: list[RunSpec], running: list[RunningRun], finished: list[tuple[float, RunSpec]],
         workers: int) -> tuple[float, str]:
    from benchmarks.matrix.cost import gpu_hours, step_ratio
    from methods import method_class

    def estimate(spec: RunSpec) -> float:
        """The cost model's seconds; once runs have finished, the work of the run (its images, at an FP
        step's cost per image) instead: the paces below then carry the method's cost as measured here."""
        seconds = 3600 * gpu_hours(spec)
        if not finished or not isinstance(spec, RunSpec) or method_class(spec.method).kind == "ptq":
            return seconds
        return seconds / step_ratio(spec)

    # A run goes at the pace of the finished runs of its own method, else of its kind (full precision or
    # quantized), else of all finished runs. The cost model's step-time ratios between methods were
    # measured on a GPU and are far off elsewhere (on a CPU a QAT step costs about an FP step), so the
    # paces measured by this grid's own runs replace them.
    paces: dict[str, list[float]] = {}
    for wall, spec in finished:
        if estimate(spec) > 0:
            for key in (spec.method, _kind(spec), ""):
                paces.setdefault(key, []).append(wall / estimate(spec))
    if not paces:
        return sum(estimate(s) for s in to_go) / workers, "cost model"

    def pace(spec: RunSpec) -> float:
        key = next(k for k in (spec.method, _kind(spec), "") if k in paces)
        return statistics.median(paces[key])

    done_part = {r.run_id: r.epoch / max(1, r.epochs) for r in running}
    left = sum(pace(s) * estimate(s) * (1 - done_part.get(s.run_id, 0.0)) for s in to_go)
    return left / workers, f"cost model at the pace of {len(paces[''])} finished runs"


def _kind(spec: RunSpec) -> str:
    return "full precision" if spec.method == "fp" else "quantized"


def _epochs_done(directory: RunDir) -> int:
    try:
        return sum(1 for line in directory.metrics_path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def _wall_s(directory: RunDir) -> float | None:
    try:
        record = directory.read_result()
    except (OSError, ValueError):
        return None
    return record.timings.wall_s if record is not None else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class View(Protocol):
    def update(self, snap: Snapshot) -> None: ...

    def message(self, line: str) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """One line per event (a run starts, finishes an epoch, is done, fails), and the counts every
    ``every_s`` seconds when something changed: what a CI log or ``nohup`` wants."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 60.0) -> None:
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.epochs: dict[str, int] = {}
        self.done: set[str] | None = None
        self.failed: set[str] | None = None
        self.last_counts = ""
        self.last_time = 0.0

    def message(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def update(self, snap: Snapshot) -> None:
        first = self.done is None
        for run in snap.running:
            if run.run_id not in self.epochs:
                self.message(f"started {run.run_id} ({run.label})")
            elif run.epoch > self.epochs[run.run_id]:
                self.message(f"epoch {run.epoch}/{run.epochs} {run.run_id} "
                             f"({format_duration(run.elapsed_s)})")
            self.epochs[run.run_id] = run.epoch
        if not first:
            for run_id in sorted(snap.done - (self.done or set())):
                self.message(f"done {run_id}")
            for run_id in sorted(set(snap.failed) - (self.failed or set())):
                self.message(f"FAILED {run_id}: {snap.failed[run_id]}")
        self.done, self.failed = set(snap.done), set(snap.failed)
        line = snap.counts_line()
        counts = line.split(" | ETA")[0]
        if counts != self.last_counts or time.time() - self.last_time >= self.every_s:
            self.message(line)
            self.last_counts, self.last_time = counts, time.time()

    def close(self) -> None:
        pass


class LiveView:
    """tqdm bars on a terminal: the grid (finished / total, counts, ETA) and one bar per running run (its
    epochs), redrawn in place; failures are printed above the bars with their reason."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream or sys.stdout
        # the text goes in desc, placed after the bar: tqdm prefixes a postfix with ", "
        self.grid = tqdm(total=total, unit="run", position=0, file=self.stream,
                         bar_format="grid {bar} {n_fmt}/{total_fmt} {desc}", dynamic_ncols=True)
        self.bars: dict[str, object] = {}
        self.failed: set[str] | None = None

    def message(self, line: str) -> None:
        self._tqdm.write(line, file=self.stream)

    def update(self, snap: Snapshot) -> None:
        finished = len(snap.done) + len(snap.failed)
        self.grid.n = finished
        self.grid.set_description_str(snap.counts_line(), refresh=False)
        self.grid.refresh()
        if self.failed is not None:
            for run_id in sorted(set(snap.failed) - self.failed):
                self.message(f"FAILED {run_id}: {snap.failed[run_id]}")
        self.failed = set(snap.failed)
        live = {run.run_id: run for run in snap.running}
        for run_id in list(self.bars):
            if run_id not in live:
                self.bars.pop(run_id).close()  # type: ignore[attr-defined]
        for index, run in enumerate(snap.running):
            bar = self.bars.get(run.run_id)
            if bar is None:
                bar = self.bars[run.run_id] = self._tqdm(
                    total=run.epochs, unit="epoch", position=index + 1, file=self.stream, leave=False,
                    dynamic_ncols=True,
                    bar_format=f"  {run.run_id} {run.label} {{bar}} epoch {{n_fmt}}/{{total_fmt}} {{desc}}")
            bar.n = run.epoch  # type: ignore[attr-defined]
            bar.set_description_str(format_duration(run.elapsed_s), refresh=False)  # type: ignore[attr-defined]
            bar.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.grid.close()


def make_view(total: int, stream: TextIO | None = None, live: bool | None = None) -> View:
    """A live view on a terminal, plain lines otherwise (``live`` forces one)."""
    stream = stream or sys.stdout
    if live is None:
        live = stream.isatty()
    return LiveView(total, stream) if live else PlainView(stream)


class Monitor:
    """Refresh ``view`` from the run directories every ``interval_s`` seconds in a daemon thread, until
    ``stop()`` (which takes one last snapshot, so the view ends on the final counts)."""

    def __init__(self, snapshot: Callable[[], Snapshot], view: View, interval_s: float = 2.0) -> None:
        self.snapshot, self.view, self.interval_s = snapshot, view, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qbench-progress", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "Monitor":
        self._thread.start()
        return self

    def message(self, line: str) -> None:
        with self._lock:
            self.view.message(line)

    def refresh(self) -> None:
        try:
            snap = self.snapshot()
        except (OSError, ValueError):  # a file replaced while read: the next tick reads it again
            return
        with self._lock:
            self.view.update(snap)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.view.close()
