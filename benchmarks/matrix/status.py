"""Where a grid stands, read from its run directories: each run's status (its on-disk state, or ``blocked``
when its FP parent failed), the progress line the launchers log, the ``--status``/``--dry-run`` report
(counts, blocked and failed runs with their reasons, a GPU-hour estimate) and ``--delete-incomplete``."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from benchmarks.matrix.expand import states
from benchmarks.run.labels import bits_label
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec

BLOCKED = "blocked"  # not a RunState: a run is blocked by its parent's directory, not by its own
Echo = Callable[[str], None]


def failure_line(output: Path, run_id: str, limit: int = 200) -> str | None:
    """The first line of a failed run's recorded error (``failed.json``), or None if it has none."""
    failure = RunDir.of(output, run_id).read_failure()
    if failure is None:
        return None
    lines = str(failure.get("error")).strip().splitlines()
    return (lines[0] if lines else "no error recorded")[:limit]


def blocked_reason(spec: RunSpec, output: Path, current: dict[str, RunState] | None = None) -> str | None:
    """Why ``spec`` cannot start, if it is a QAT run whose FP parent failed; None otherwise. Relaunching
    after the parent is fixed (or ``--delete-incomplete``) reruns the parent and then these runs."""
    parent = spec.parent()
    if parent is None:
        return None
    known = current.get(parent.run_id) if current is not None else None
    state = known if known is not None else RunDir.of(output, parent.run_id).state()
    if state is not RunState.FAILED:
        return None
    return f"FP parent {parent.run_id} failed: {failure_line(output, parent.run_id)}"


def run_statuses(specs: Iterable[RunSpec], output: Path) -> dict[str, tuple[str, str | None]]:
    """run_id -> (status, reason): the state's name, or ``blocked`` with its reason for a run that is
    neither done nor running and waits for a failed FP parent; failed runs carry their error line."""
    specs = list(specs)
    current = states(specs, output)
    statuses: dict[str, tuple[str, str | None]] = {}
    for spec in specs:
        state = current[spec.run_id]
        reason = None
        if state not in (RunState.DONE, RunState.RUNNING):
            reason = blocked_reason(spec, output, current)
        if reason is not None:
            statuses[spec.run_id] = (BLOCKED, reason)
        elif state is RunState.FAILED:
            statuses[spec.run_id] = (state.value, failure_line(output, spec.run_id))
        else:
            statuses[spec.run_id] = (state.value, None)
    return statuses


def progress_line(specs: list[RunSpec], output: Path) -> str:
    """One line of counts: pending (not launched, incomplete or interrupted), running, done, failed,
    blocked."""
    counts = Counter(status for status, _ in run_statuses(specs, output).values())
    pending = (counts[RunState.NOT_LAUNCHED.value] + counts[RunState.INCOMPLETE.value]
               + counts[RunState.INTERRUPTED.value])
    return (f"pending {pending} | running {counts[RunState.RUNNING.value]} | "
            f"done {counts[RunState.DONE.value]} | failed {counts[RunState.FAILED.value]} | "
            f"blocked {counts[BLOCKED]} | total {len(specs)}")


def _method_column(spec: RunSpec) -> str:
    """The method; a test-time adaptation run also names its quantized parent's method (``tent<lsq``)."""
    parent = spec.parent()
    if parent is not None and parent.method != "fp":
        return f"{spec.method}<{parent.method}"
    return spec.method


def print_runs(specs: list[RunSpec], output: Path, show_all: bool, echo: Echo = print,
               runs_per_gpu: int = 1) -> None:
    """Counts by status, every blocked and failed run with its reason, and the GPU-hours still to spend
    (packed ``runs_per_gpu`` to a GPU as the launch would); ``show_all`` (``--dry-run``) lists every run
    first."""
    from benchmarks.matrix.cost import ASSUMED_IMAGES_PER_S, adjustments_line, gpu_hours, source_line

    statuses = run_statuses(specs, output)
    if show_all:
        echo(f"{'run_id':16}  {'state':12}  {'method':14}  {'bits':6}  {'task':30}  {'arch':18}  seed  gpus")
        for spec in specs:
            echo(f"{spec.run_id:16}  {statuses[spec.run_id][0]:12}  {_method_column(spec):14}  "
                 f"{bits_label(spec.w_bits, spec.a_bits, spec.method):6}  {spec.task.label:30}  "
                 f"{spec.arch:18}  {spec.seed:4}  {spec.processes}")
    counts = Counter(status for status, _ in statuses.values())
    echo("runs by state: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
         + f" (total {len(specs)})")
    for wanted in (BLOCKED, RunState.FAILED.value):
        for spec in specs:
            status, reason = statuses[spec.run_id]
            if status == wanted:
                echo(f"  {status} {spec.run_id}: {reason}")
    remaining = [s for s in specs if statuses[s.run_id][0] != RunState.DONE.value]
    hours = sum(gpu_hours(s, runs_per_gpu) for s in remaining)
    wide = [s for s in remaining if s.processes > 1]
    if wide:  # data-parallel runs: the same GPU-hours, spread over their GPUs (linear scaling assumed)
        wall = sum(gpu_hours(s) / s.processes for s in wide)
        echo(f"{len(wide)} runs are data-parallel ({sum(s.processes for s in wide)} GPUs in all): "
             f"{wall:.1f} hours one after another on their own GPUs, if scaling is linear")
    echo(f"estimated GPU-hours for the {len(remaining)} runs not done: {hours:.1f} (assumed FP fp32 "
         f"images/s per arch: {ASSUMED_IMAGES_PER_S}; {source_line()}; measured at ResNet-20 size, an upper "
         "bound for larger models)")
    adjusted = adjustments_line(any(getattr(s, "recipe", None) is not None and s.recipe.compile
                                    for s in remaining), runs_per_gpu)
    if adjusted:
        echo(f"  estimate adjusted: {adjusted}")


def delete_incomplete(specs: list[RunSpec], output: Path) -> int:
    """Delete the directories of runs that are incomplete or failed (never a done or running one); returns
    how many. A failed FP parent deleted here is trained again, and its blocked runs after it, on relaunch."""
    deleted, current = 0, states(specs, output)
    for spec in specs:
        if current[spec.run_id] in (RunState.INCOMPLETE, RunState.FAILED):
            shutil.rmtree(RunDir.of(output, spec.run_id).path)
            deleted += 1
    return deleted
