"""Several runs per GPU (issue 18): one job holding N runs as N processes.

A small quantized ResNet-20 leaves most of a large GPU idle, so ``runs_per_gpu`` = N groups the launch's
requests into packs of at most N and submits each pack as one job (``PackedJob``): the job starts one process
per member, all sharing the job's GPU (the same ``CUDA_VISIBLE_DEVICES``), and waits for them all. Each
member is the request it was (for a matrix run, ``RunJob``: the run claims its directory, writes its
records and checkpoints, resumes after a kill), so packing changes where runs execute, not what they write.

Packs never break a dependency: only requests waiting for the same key (e.g. the QAT runs of one FP parent)
share a pack, and a pack waits for the pack holding that key. A failing member does not stop the others; the
pack then fails, naming its failed members, after all of them ended (dependants of the pack are held back,
as for a failed single job; a re-launch finds the finished members done and re-runs the failed ones only).
Works with every launcher: packing happens on the requests, before the launcher sees them.
"""
from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import submitit

from benchmarks.launch.options import Launcher, LaunchOptions, LaunchReport
from benchmarks.launch.requests import JobRequest, dependency_waves

PACK_PREFIX = "pack:"


class PackFailed(RuntimeError):
    """Some members of a pack failed (the others finished); the message names them."""


def _run_member(fn, args: tuple[Any, ...], results, key: str) -> None:
    """A member process: the request's callable, its outcome sent back as (key, error line or None)."""
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - reported to the pack, which decides
        results.put((key, f"{type(err).__name__}: {err}".splitlines()[0][:300]))
        traceback.print_exc()
        raise SystemExit(1) from None
    results.put((key, None))


class PackedJob(submitit.helpers.Checkpointable):
    """Runs the members ``[(key, fn, args), ...]`` as concurrent processes; returns {key: outcome}.

    Requeued (SLURM preemption or time-out), the job calls this again: finished runs return at once and
    interrupted ones resume from their checkpoints, as single jobs do.
    """

    def __call__(self, members: list[tuple[str, Any, tuple[Any, ...]]]) -> dict[str, Any]:
        context = multiprocessing.get_context("spawn")  # no forked CUDA/torch state
        results = context.Queue()
        processes = {key: context.Process(target=_run_member, args=(fn, args, results, key), name=key)
                     for key, fn, args in members}
        # The members share the job's cores, as the local pool's workers do (the user's setting wins); a
        # spawned process reads its environment at start.
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = saved or str(max(1, len(os.sched_getaffinity(0)) // len(members)))
        try:
            for process in processes.values():
                process.start()
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS")
        for process in processes.values():
            process.join()
        reported: dict[str, str | None] = {}
        while not results.empty():
            key, error = results.get()
            reported[key] = error
        outcome: dict[str, Any] = {}
        for key, process in processes.items():
            if key in reported:
                outcome[key] = reported[key] or "ok"
            else:  # killed (SIGKILL, out of memory) before it could report
                outcome[key] = f"member process ended with exit code {process.exitcode}"
        failed = {key: why for key, why in outcome.items() if why != "ok"}
        if failed:
            raise PackFailed(f"{len(failed)} of {len(members)} packed runs failed: "
                             + "; ".join(f"{key}: {why}" for key, why in failed.items()))
        return outcome


def pack_key(members: Sequence[JobRequest]) -> str:
    return PACK_PREFIX + ",".join(request.key for request in members)


def pack_requests(requests: Sequence[JobRequest], runs_per_gpu: int) -> list[JobRequest]:
    """``requests`` grouped into packs of at most ``runs_per_gpu`` (1: unchanged). A pack holds requests
    of one dependency wave waiting for the same key; it depends on the pack holding that key."""
    if isinstance(runs_per_gpu, bool) or not isinstance(runs_per_gpu, int) or runs_per_gpu < 1:
        raise ValueError(f"invalid runs_per_gpu {runs_per_gpu!r}; expected an integer >= 1")
    if runs_per_gpu == 1:
        return list(requests)
    packed: list[JobRequest] = []
    pack_of: dict[str, str] = {}  # member key -> its pack's key
    for wave in dependency_waves(requests):
        groups: dict[tuple[str | None, str | None], list[JobRequest]] = {}
        for request in wave:
            groups.setdefault((request.depends_on, request.after_job), []).append(request)
        for (depends_on, after_job), group in groups.items():
            for start in range(0, len(group), runs_per_gpu):
                members = group[start:start + runs_per_gpu]
                key = pack_key(members)
                for request in members:
                    pack_of[request.key] = key
                packed.append(JobRequest(
                    key=key, fn=PackedJob(), args=([(r.key, r.fn, r.args) for r in members],),
                    depends_on=pack_of[depends_on] if depends_on is not None else None, after_job=after_job))
    return packed


def members_of(key: str) -> list[str]:
    """The request keys inside a pack's key (a key that is no pack: itself)."""
    return key[len(PACK_PREFIX):].split(",") if key.startswith(PACK_PREFIX) else [key]


def launch_packed(launcher: Launcher, requests: Sequence[JobRequest], options: LaunchOptions,
                  runs_per_gpu: int) -> LaunchReport:
    """``launcher`` on the packed requests; the report speaks of the members again (a pack's job id is each
    member's; a failed pack fails its members that did not succeed, each with the pack's error)."""
    if runs_per_gpu == 1:
        return launcher(requests, options)
    packs = pack_requests(requests, runs_per_gpu)
    member_succeeded = options.succeeded
    member_submitted = options.submitted

    def pack_submitted(key: str, job_id: str) -> None:  # each member of a pack records the pack's job
        for member in members_of(key):
            member_submitted(member, job_id)  # type: ignore[misc]

    packed_options = replace(options, succeeded=None if member_succeeded is None else (
        lambda key: all(member_succeeded(member) for member in members_of(key))),
        submitted=None if member_submitted is None else pack_submitted)
    options.log(f"packing {len(requests)} runs into {len(packs)} jobs of at most {runs_per_gpu} "
                "(runs_per_gpu)")
    outcome = launcher(packs, packed_options)
    report = LaunchReport(skipped=list(outcome.skipped))
    for key in outcome.launched:
        report.launched += members_of(key)
        report.job_ids.update({member: outcome.job_ids[key] for member in members_of(key)
                               if key in outcome.job_ids})
    for key, error in outcome.failed.items():
        for member in members_of(key):
            if member_succeeded is None or not member_succeeded(member):
                report.failed[member] = error
    for key, reason in outcome.blocked.items():
        report.blocked.update({member: reason for member in members_of(key)})
    return report
