"""A grid's runs through the launch registry: every run that is not done (nor running elsewhere) becomes a
job request keyed by its run id, waiting for its own FP parent's run when that parent is launched too, and
for nothing when the parent is already done. So a QAT run starts as soon as its parent is done, and a failed
parent holds back only its own runs, which come back as blocked with the parent's error. Completion is read
from the run directories, never from the scheduler. With the ``slurm`` launcher, a run whose job of an earlier
launch is still queued or running (its ``queued.json``, asked of squeue) is left to that job, and its QAT
runs wait for that job (``afterok``) instead of being held back."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.launch.job import RunJob
from benchmarks.launch.options import LaunchOptions, LaunchReport, Log
from benchmarks.launch.packing import launch_packed
from benchmarks.launch.profiles import load_slurm_profile
from benchmarks.launch.queued import queued_elsewhere, wait_for_jobs
from benchmarks.launch.registry import get_launcher
from benchmarks.launch.requests import JobRequest
from benchmarks.matrix.expand import states
from benchmarks.matrix.status import blocked_reason, failure_line, progress_line
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec


@dataclass
class GridLaunch:
    """Where a grid's runs go and how they are launched (``run_matrix.py``'s options)."""

    output: Path
    grid: str | None = None
    data_root: str | None = None
    device: str = "auto"
    workers: int = 1
    slurm_profile: str = "local"
    runs_per_gpu: int = 1  # >1: packs of this many runs share one job and its GPU (launch/packing.py)
    wait: bool = True
    poll_s: float = 5.0
    log: Log = print
    provenance: dict[str, dict] = field(default_factory=dict)  # run_id -> where tuned hparams came from
    # log the counts line after each job that ends (off when a live view shows the counts itself)
    progress_lines: bool = True


def launch_runs(specs: list[RunSpec], launcher: str, options: GridLaunch) -> LaunchReport:
    """Launch every run of ``specs`` that is neither done nor running elsewhere; returns the report with
    run ids as keys (``skipped``: done or running; ``blocked``/``failed``: with their reasons)."""
    run_launcher = get_launcher(launcher)  # a bad name fails before anything is read or written
    output = Path(options.output)
    current = states(specs, output)
    # slurm: a run whose job of an earlier launch is alive (one squeue call) is left to that job
    queued = queued_elsewhere(output, current, options.log) if launcher == "slurm" else {}
    launching = {s.run_id for s in specs if current[s.run_id] not in (RunState.DONE, RunState.RUNNING)
                 and s.run_id not in queued}
    job, by_id = RunJob(), {spec.run_id: spec for spec in specs}
    report, requests = LaunchReport(), []
    for spec in specs:
        if spec.run_id not in launching:
            report.skipped.append(spec.run_id)
            continue
        parent = spec.parent()
        depends_on = after_job = None
        if parent is not None and not RunDir.of(output, parent.run_id).is_done():
            if parent.run_id in queued:  # its job of an earlier launch trains it: wait for that job
                after_job = queued[parent.run_id]
            elif parent.run_id not in launching:  # running elsewhere: no job here to wait for
                report.blocked[spec.run_id] = (f"FP parent {parent.run_id} is running elsewhere; "
                                               "launch again once it is done")
                continue
            else:
                depends_on = parent.run_id
        requests.append(JobRequest(spec.run_id, job, _job_args(spec, options), depends_on,
                                   spec.processes, spec.nodes, after_job))
    if queued:
        jobs = sorted(set(queued.values()))
        options.log(f"already queued: {len(queued)} runs in jobs of an earlier launch "
                    f"({', '.join(jobs[:5])}{', ...' if len(jobs) > 5 else ''}); not submitted again")
    if launcher == "slurm":
        fp = sum(by_id[r.key].method == "fp" for r in requests)
        options.log(f"submitting {len(requests)} runs to SLURM ({fp} FP, {len(requests) - fp} QAT); "
                    "a QAT run waits only for its own FP parent")
    try:
        launched = launch_packed(run_launcher, requests, LaunchOptions(
            folder=output / "submitit", workers=options.workers, slurm_profile=options.slurm_profile,
            job_name=job_name(options.grid), wait=options.wait, poll_s=options.poll_s,
            log=options.log,
            succeeded=lambda run_id: RunDir.of(output, run_id).is_done(),
            submitted=(lambda run_id, job_id: RunDir.of(output, run_id).write_queued(job_id))
            if launcher == "slurm" else None,
            progress=(lambda: progress_line(specs, output)) if options.progress_lines else None),
            runs_per_gpu_of(launcher, options))
    except KeyboardInterrupt:
        if launcher != "slurm":  # SLURM jobs are the cluster's: they go on, and record their own state
            mark_interrupted([r.key for r in requests], output)
        raise
    report.launched, report.job_ids = launched.launched, launched.job_ids
    if options.wait and queued:  # the earlier launch's jobs: watched until they leave the queue
        options.log(f"waiting for {len(set(queued.values()))} jobs of an earlier launch")
        wait_for_jobs(queued.values(), options.poll_s, time.sleep)
        if options.progress_lines:
            options.log(progress_line(specs, output))
    # the run directories say why, in the words --status uses; the launcher's reason is the fallback
    report.failed = {key: failure_line(output, key) or reason for key, reason in launched.failed.items()}
    for key in list(report.failed):  # never started because its parent's earlier job failed: blocked
        parent = by_id[key].parent()
        reason = blocked_reason(by_id[key], output)
        if parent is not None and parent.run_id in queued and reason and failure_line(output, key) is None:
            del report.failed[key]
            report.blocked[key] = reason
    report.blocked.update({key: blocked_reason(by_id[key], output) or f"FP parent {reason}"
                           for key, reason in launched.blocked.items()})
    return report


def runs_per_gpu_of(launcher: str, options: GridLaunch) -> int:
    """``--runs-per-gpu`` when given (more than 1), else the SLURM profile's ``runs_per_gpu``, else 1."""
    if options.runs_per_gpu != 1 or launcher != "slurm":
        return options.runs_per_gpu
    return int(load_slurm_profile(options.slurm_profile)["runs_per_gpu"])


def _job_args(spec: RunSpec, options: GridLaunch) -> tuple[Any, ...]:
    return (spec.to_dict(), str(options.output), options.grid, options.data_root, options.device,
            options.provenance.get(spec.run_id))


def job_name(grid: str | None) -> str:
    """The scheduler's name of a grid's jobs (``scancel --name`` takes it)."""
    return f"qbench-{grid or 'runs'}"


def mark_interrupted(run_ids: list[str], output: Path) -> list[str]:
    """After Ctrl-C (or SIGTERM/SIGHUP): record each started run that did not record its own stop (its
    worker was killed before it could) as interrupted, so ``--status`` says so and a relaunch resumes it.
    Runs that are done, running elsewhere, never started or already recorded are left alone. Returns the ids
    marked."""
    marked = []
    for run_id in run_ids:
        directory = RunDir.of(output, run_id)
        if directory.state() is RunState.INCOMPLETE:
            directory.write_failure("KeyboardInterrupt: the launcher was stopped (Ctrl-C, SIGTERM or "
                                    "SIGHUP)", "", interrupted=True)
            marked.append(run_id)
    return marked
