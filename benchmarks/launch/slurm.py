"""The ``slurm`` launcher: submitit job arrays where each request waits only for its own dependency.

Requests go in dependency waves. Within a wave, the requests that wait for the same job share arrays, and so
do the requests that wait for nothing; arrays are split below the profile's ``max_array_size``. An array
whose requests wait for a job gets ``--dependency=afterok:<that job>`` (for one task of an array SLURM takes
``<array id>_<task index>``) and ``--kill-on-invalid-dep=yes``: when that one job fails SLURM cancels its
dependants, and only them, instead of leaving them pending forever. (One ``afterok`` on whole arrays would
wait for every task, and one failed task would cancel every dependant.) The arrays of a wave share the
profile's ``array_parallelism``, so a wave split by dependency runs no wider than one array would.
While waiting, a request whose dependency failed is reported as blocked at once; completion is judged by
``options.succeeded`` (the run directories for the matrix) when given.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from benchmarks.launch.distributed_slurm import shape_overrides
from benchmarks.launch.options import LaunchOptions, LaunchReport, job_outcome
from benchmarks.launch.profiles import array_chunks, load_slurm_profile, make_executor
from benchmarks.launch.requests import JobRequest, dependency_waves


@dataclass(frozen=True)
class ArrayPlan:
    """One sbatch submission: ``requests`` as one array (a plain job when alone), after ``depends_on``."""

    wave: int
    depends_on: str | None
    requests: list[JobRequest]
    parallelism: int  # at most this many of its tasks at once (``--array=0-N%P``)
    after_job: str | None = None  # a job of an earlier launch to wait for (JobRequest.after_job)


def plan_arrays(requests: Sequence[JobRequest], profile: dict[str, Any]) -> list[ArrayPlan]:
    """The arrays that submit ``requests``: by wave, then by dependency (first-seen order), chunked."""
    plans: list[ArrayPlan] = []
    for wave, members in enumerate(dependency_waves(requests)):
        # one array shares one resource request: data-parallel runs of another shape go in arrays of their own
        groups: dict[tuple[str | None, str | None, int, int], list[JobRequest]] = {}
        for request in members:
            key = (request.depends_on, request.after_job, request.processes, request.nodes)
            groups.setdefault(key, []).append(request)
        chunks = [(key[:2], chunk) for key, group in groups.items() for chunk in array_chunks(group, profile)]
        share = max(1, profile["array_parallelism"] // len(chunks))
        plans.extend(ArrayPlan(wave, dep, chunk, min(share, len(chunk)), after_job)
                     for (dep, after_job), chunk in chunks)
    return plans


def dependency(job_id: str) -> str:
    """The sbatch ``--dependency`` value that waits for one job (``123``) or one array task (``123_4``)."""
    return f"afterok:{job_id}"


def launch_slurm(requests: Sequence[JobRequest], options: LaunchOptions) -> LaunchReport:
    """Submit every request (dependency waves in order), then, with ``options.wait``, watch them end."""
    profile = load_slurm_profile(options.slurm_profile)
    report = LaunchReport()
    jobs: dict[str, Any] = {}
    for plan in plan_arrays(requests, profile):
        overrides: dict[str, Any] = {"name": options.job_name, "slurm_array_parallelism": plan.parallelism,
                                     **shape_overrides(plan.requests[0], profile)}
        # (an after_job that has ended and left SLURM's memory makes sbatch fail: the launch stops loudly)
        after = plan.after_job if plan.depends_on is None else str(jobs[plan.depends_on].job_id)
        if after is not None:
            overrides["slurm_dependency"] = dependency(after)
            overrides["slurm_additional_parameters"] = {**profile["additional_parameters"],
                                                        "kill-on-invalid-dep": "yes"}
        executor = make_executor(profile, options.folder / "%j", cluster="slurm", **overrides)
        with executor.batch():  # one sbatch call: an array of these requests, whatever their callables
            submitted = [executor.submit(request.fn, *request.args) for request in plan.requests]
        for request, job in zip(plan.requests, submitted, strict=True):
            jobs[request.key] = job
            report.launched.append(request.key)
            report.job_ids[request.key] = str(job.job_id)
            if options.submitted is not None:
                options.submitted(request.key, str(job.job_id))
        array = str(submitted[0].job_id).split("_")[0]
        options.log(f"slurm: job {array} ({len(submitted)} task(s))"
                    + (f" after {after} ({plan.depends_on or 'an earlier launch'})" if after else ""))
    if options.wait:
        _watch([r for wave in dependency_waves(requests) for r in wave], jobs, options, report)
    return report


def _watch(ordered: list[JobRequest], jobs: dict[str, Any], options: LaunchOptions,
           report: LaunchReport) -> None:
    """Poll until every job has ended or is blocked; ``ordered`` puts each dependency before its dependants,
    so one pass resolves a failure and its dependants together."""
    pending = list(ordered)
    while pending:
        time.sleep(options.poll_s)
        unresolved = {request.key for request in pending}
        changed = False
        for request in list(pending):
            if request.depends_on in unresolved:
                continue  # SLURM state of its dependency not seen yet: judge that first
            if not report.hold_back(request):  # blocked: SLURM cancels it (kill-on-invalid-dep)
                job = jobs[request.key]
                if not job.done():
                    continue
                error = job_outcome(request.key, job, options)
                if error is not None:
                    report.failed[request.key] = error
                    options.log(f"[{request.key}] FAILED on SLURM (job {job.job_id}): {error}")
            pending.remove(request)
            unresolved.discard(request.key)
            changed = True
        if changed and options.progress is not None:
            options.log(options.progress())
