"""Launchers: every run goes through submitit — ``debug`` (in-process), ``local`` (subprocesses, at most
``workers`` at a time, one GPU each when GPUs exist) or ``slurm`` (job arrays, FP wave then a QAT wave that
depends on it). Completion is read from run directories, never from the scheduler."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit

from benchmarks.launch.job import RunJob
from benchmarks.launch.profiles import array_chunks, load_slurm_profile, make_executor
from benchmarks.matrix.expand import states
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec

LAUNCHERS = ("debug", "local", "slurm")
Log = Callable[[str], None]


@dataclass
class LaunchOptions:
    output: Path
    grid: str | None = None
    data_root: str | None = None
    device: str = "auto"
    workers: int = 1
    slurm_profile: str = "local"
    wait: bool = True
    poll_s: float = 5.0
    log: Log = print
    provenance: dict[str, dict] = field(default_factory=dict)  # run_id -> where tuned hparams came from


@dataclass
class LaunchReport:
    launched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # DONE or RUNNING elsewhere
    blocked: list[str] = field(default_factory=list)  # QAT runs whose FP parent is not done
    job_ids: list[str] = field(default_factory=list)


def progress_line(specs: list[RunSpec], output: Path) -> str:
    counts = {state: 0 for state in RunState}
    for state in states(specs, output).values():
        counts[state] += 1
    pending = counts[RunState.NOT_LAUNCHED] + counts[RunState.INCOMPLETE]
    return (f"pending {pending} | running {counts[RunState.RUNNING]} | done {counts[RunState.DONE]} | "
            f"failed {counts[RunState.FAILED]} | total {len(specs)}")


def launch(specs: list[RunSpec], launcher: str, options: LaunchOptions) -> LaunchReport:
    """Launch every run that is not DONE (or RUNNING elsewhere): FP runs first, then QAT runs."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    report = LaunchReport()
    current = states(specs, options.output)
    todo = []
    for spec in specs:
        if current[spec.run_id] in (RunState.DONE, RunState.RUNNING):
            report.skipped.append(spec.run_id)
        else:
            todo.append(spec)
    if launcher == "slurm":
        _launch_slurm([s for s in todo if s.method == "fp"], [s for s in todo if s.method != "fp"], specs,
                      options, report)
    else:
        _launch_pool(todo, launcher, specs, options, report)
    return report


def _parent_done(spec: RunSpec, output: Path) -> bool:
    parent = spec.parent()
    return parent is None or RunDir.of(output, parent.run_id).is_done()


def _job_args(spec: RunSpec, options: LaunchOptions) -> tuple[Any, ...]:
    return (spec.to_dict(), str(options.output), options.grid, options.data_root, options.device,
            options.provenance.get(spec.run_id))


def _launch_pool(todo: list[RunSpec], launcher: str, all_specs: list[RunSpec], options: LaunchOptions,
                 report: LaunchReport) -> None:
    """Runs ``todo`` with at most ``workers`` jobs in flight. A QAT run starts as soon as its own FP parent is
    done (not after a whole FP wave); runs whose parent failed are reported as blocked. A failed run is logged
    and the rest go on."""
    folder = options.output / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher)
    executor.update_parameters(timeout_min=24 * 60)
    gpus = _visible_gpus()
    workers = 1 if launcher == "debug" else max(1, options.workers)
    queue, running = list(todo), []
    while queue or running:
        while len(running) < workers:
            spec = next((s for s in queue if _parent_done(s, options.output)), None)
            if spec is None:
                break
            queue.remove(spec)
            slot = len(running)
            env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))} if launcher == "local" else {}
            if gpus:
                env["QBENCH_GPU"] = str(gpus[slot % len(gpus)])
            with _environment(env):
                job = executor.submit(RunJob(), *_job_args(spec, options))
            running.append((spec, job))
            report.launched.append(spec.run_id)
            report.job_ids.append(str(job.job_id))
        finished = [(s, j) for s, j in running if launcher == "debug" or j.done()]
        for spec, job in finished:
            running.remove((spec, job))
            try:
                job.result()
            except Exception as err:  # recorded in the run's failed.json; the grid goes on
                options.log(f"[{spec.run_id}] FAILED: {str(err).strip().splitlines()[-1][:300]}")
            options.log(progress_line(all_specs, options.output))
        if running and not finished:
            time.sleep(min(options.poll_s, 1.0))
        if queue and not running and not any(_parent_done(s, options.output) for s in queue):
            report.blocked.extend(s.run_id for s in queue)  # their FP parents failed
            break


def _launch_slurm(fp_wave: list[RunSpec], qat_wave: list[RunSpec], all_specs: list[RunSpec],
                  options: LaunchOptions, report: LaunchReport) -> None:
    profile = load_slurm_profile(options.slurm_profile)
    folder = options.output / "submitit" / "%j"
    fp_ids: list[str] = []
    jobs = []
    for wave in (fp_wave, qat_wave):
        for chunk in array_chunks(wave, profile):
            overrides: dict[str, Any] = {"name": f"qbench-{options.grid or 'runs'}"}
            if wave is qat_wave and fp_ids:
                # afterok: QAT starts only from finished FP parents; kill_on_invalid_dep cancels them (instead
                # of leaving them pending forever) when an FP job fails.
                extra = dict(profile["additional_parameters"])
                extra.update({"dependency": "afterok:" + ":".join(fp_ids), "kill-on-invalid-dep": "yes"})
                overrides["slurm_additional_parameters"] = extra
            executor = make_executor(profile, folder, cluster="slurm", **overrides)
            args = [_job_args(spec, options) for spec in chunk]
            chunk_jobs = executor.map_array(RunJob(), *zip(*args))
            jobs.extend(zip(chunk, chunk_jobs))
            report.launched.extend(spec.run_id for spec in chunk)
            report.job_ids.extend(str(job.job_id) for job in chunk_jobs)
            if wave is fp_wave:
                fp_ids.append(str(chunk_jobs[0].job_id).split("_")[0])
    options.log(f"submitted {len(jobs)} runs to SLURM ({len(fp_wave)} FP, {len(qat_wave)} QAT): "
                f"job arrays {sorted({j.split('_')[0] for j in report.job_ids})}")
    while options.wait and jobs:
        time.sleep(options.poll_s)
        still = [(s, j) for s, j in jobs if not j.done()]
        for spec, job in [p for p in jobs if p not in still]:
            if job.state not in ("COMPLETED",) and not RunDir.of(options.output, spec.run_id).is_done():
                options.log(f"[{spec.run_id}] FAILED on SLURM (job {job.job_id}, state {job.state})")
        jobs = still
        options.log(progress_line(all_specs, options.output))


def _visible_gpus() -> list[int]:
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - no CUDA is the common CPU case
        return []


class _environment:
    """Temporarily set environment variables (submitit's local executor copies os.environ at submit)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.saved = values, {}

    def __enter__(self) -> None:
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
