"""A job request: one callable a launcher submits, named by a key, optionally waiting for another request.

Matrix runs and tuning trials both reach the launchers as requests: a run's key is its run id and it waits
for its FP parent's run; a trial waits for the study's FP parent. A dependency always names another request
of the same launch, so a launcher can order, group and hold back requests without knowing what they do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class JobRequest:
    """``fn(*args)`` as one job. ``depends_on``: the key of a request that must succeed first (None: none).
    ``fn`` and ``args`` must pickle (submitit sends them to the worker); ``fn`` by reference, so a module
    function or an instance of a module-level class, never a lambda or a function of ``__main__``."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    depends_on: str | None = None
    # a data-parallel run: this many processes (one per GPU) on this many nodes (distributed_slurm.py)
    processes: int = 1
    nodes: int = 1
    # slurm only: a job of an earlier launch (``123`` or ``123_4``) that must succeed first, when what this
    # request waits for is queued there instead of being launched with it (launch/queued.py)
    after_job: str | None = None


def dependency_waves(requests: Sequence[JobRequest]) -> list[list[JobRequest]]:
    """The requests by depth: wave 0 depends on nothing, wave k on a request of wave k-1 (order kept).

    Raises ValueError for a repeated key, a dependency that is not a key of ``requests``, or a cycle: a
    launcher could never start such a request, and saying so beats waiting for it forever.
    """
    by_key: dict[str, JobRequest] = {}
    for request in requests:
        if request.key in by_key:
            raise ValueError(f"job request key {request.key!r} appears twice")
        by_key[request.key] = request
    depth: dict[str, int] = {}

    def depth_of(request: JobRequest, seen: tuple[str, ...] = ()) -> int:
        if request.key in depth:
            return depth[request.key]
        if request.key in seen:
            raise ValueError(f"job requests depend on each other in a cycle: {' -> '.join(seen)}")
        if request.depends_on is None:
            depth[request.key] = 0
        elif request.depends_on not in by_key:
            raise ValueError(f"job request {request.key!r} depends on {request.depends_on!r}, which is not "
                             "launched with it")
        else:
            depth[request.key] = depth_of(by_key[request.depends_on], seen + (request.key,)) + 1
        return depth[request.key]

    waves: list[list[JobRequest]] = []
    for request in requests:
        level = depth_of(request)
        while len(waves) <= level:
            waves.append([])
        waves[level].append(request)
    return waves
