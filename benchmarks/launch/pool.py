"""The ``debug`` and ``local`` launchers: a pool of submitit jobs on this machine.

``debug`` runs each job in this process, one after another (submitit's DebugExecutor: breakpoints work).
``local`` runs each in its own process (submitit's LocalExecutor), at most ``workers`` at once, each with its
share of the CPU threads and, when there are GPUs, its own GPU. A request starts as soon as the request it
waits for has succeeded, not after a whole wave; a failed job is logged and the others go on, and the requests
that wait for it are reported as blocked.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Sequence

import submitit

from benchmarks.launch.job import GPU_ENV
from benchmarks.launch.options import LaunchOptions, LaunchReport, Log, job_outcome
from benchmarks.launch.requests import JobRequest, dependency_waves

POOL_TIMEOUT_MIN = 24 * 60
# after Ctrl-C, how long a worker may take to reach its next step and record the stop
STOP_GRACE_S = 30.0


def launch_debug(requests: Sequence[JobRequest], options: LaunchOptions) -> LaunchReport:
    """Every request in this process, one at a time, in dependency order."""
    return _run_pool(requests, options, "debug", workers=1)


def launch_local(requests: Sequence[JobRequest], options: LaunchOptions) -> LaunchReport:
    """Every request in its own process, at most ``options.workers`` at once."""
    return _run_pool(requests, options, "local", workers=max(1, options.workers))


def _run_pool(requests: Sequence[JobRequest], options: LaunchOptions, cluster: str,
              workers: int) -> LaunchReport:
    queue = [request for wave in dependency_waves(requests) for request in wave]
    report = LaunchReport()
    if not queue:
        return report
    executor = submitit.AutoExecutor(folder=options.folder, cluster=cluster)
    executor.update_parameters(timeout_min=POOL_TIMEOUT_MIN)
    gpus = _visible_gpus() if cluster == "local" else []
    # the user's OMP_NUM_THREADS wins; else the cores are shared among the workers
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // workers))
    running: list[tuple[JobRequest, submitit.Job, int]] = []
    try:
        _pool_loop(queue, running, executor, options, cluster, workers, gpus, threads, report)
    except KeyboardInterrupt:
        stop_jobs([job for _, job, _ in running], options.log)
        raise
    return report


def _pool_loop(queue: list[JobRequest], running: list[tuple[JobRequest, submitit.Job, int]], executor,
               options: LaunchOptions, cluster: str, workers: int, gpus: list[str], threads: str,
               report: LaunchReport) -> None:
    free_slots = list(range(workers))  # a slot is a worker's seat: its GPU stays its own while it runs
    succeeded: set[str] = set()
    while queue or running:
        queue = [request for request in queue if not report.hold_back(request)]
        while free_slots:
            request = next((r for r in queue if r.depends_on is None or r.depends_on in succeeded), None)
            if request is None:
                break
            queue.remove(request)
            slot = free_slots.pop(0)
            env = {"OMP_NUM_THREADS": threads} if cluster == "local" else {}
            if gpus:
                env[GPU_ENV] = gpus[slot % len(gpus)]
            with _environment(env):
                job = executor.submit(request.fn, *request.args)
            running.append((request, job, slot))
            report.launched.append(request.key)
            report.job_ids[request.key] = str(job.job_id)
        # a debug job runs when asked for its outcome, so it counts as finished at once
        finished = [entry for entry in running if cluster == "debug" or entry[1].done()]
        for entry in finished:
            request, job, slot = entry
            running.remove(entry)
            free_slots.append(slot)
            free_slots.sort()
            error = job_outcome(request.key, job, options)
            if error is None:
                succeeded.add(request.key)
            else:
                report.failed[request.key] = error
                options.log(f"[{request.key}] FAILED: {error}")
            if options.progress is not None:
                options.log(options.progress())
        if running and not finished:
            time.sleep(min(options.poll_s, 1.0))


def stop_jobs(jobs: Sequence[submitit.Job], log: Log, grace_s: float = STOP_GRACE_S) -> None:
    """Stop local jobs the way SLURM ends a job: SIGTERM to each job's controller, which forwards it to the
    worker, whose run stops at the next step and records itself as interrupted (``failed.json`` with
    ``interrupted``); after ``grace_s`` seconds whatever still runs is cancelled (SIGINT, then SIGKILL).
    A second Ctrl-C skips the wait."""
    alive = [job for job in jobs if getattr(job, "_process", None) is not None and not job.done()]
    if not alive:
        return
    log(f"stopping {len(alive)} running job(s); each records its run as interrupted")
    for job in alive:
        with contextlib.suppress(OSError):  # the job's controller process (submitit's LocalJob keeps it)
            getattr(job, "_process").send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        while any(not job.done() for job in alive) and time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    for job in alive:
        if not job.done():
            job.cancel(check=False)


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries for a worker: the parent's own
    list when it has one (index 0 of a restricted process is not physical GPU 0), else 0..n-1."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA is the common CPU case
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


class _environment:
    """Temporarily set environment variables (submitit's local executor copies os.environ at submit)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values: dict[str, str] = values
        self.saved: dict[str, str | None] = {}

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
