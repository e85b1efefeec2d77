"""How a data-parallel run asks SLURM for its processes (docs/distributed.md).

A run with ``recipe.processes = G`` over ``recipe.nodes = N`` is one SLURM job of G tasks: ``--nodes=N
--ntasks-per-node=G/N``, one task per GPU (on a profile with GPUs, ``--gpus-per-node=G/N`` in place of the
profile's count; each task sees its node's GPUs and takes the one of its local rank), and the profile's
``cpus_per_task`` for each task's data loading.
submitit starts the job callable in every task; each task joins the process group from SLURM's variables
(``benchmarks/run/distributed_run.py``). ``--kill-on-bad-exit=1``: when one task dies, SLURM ends the
others at once instead of leaving them blocked in a collective until its timeout.
"""
from __future__ import annotations

from typing import Any

from benchmarks.launch.requests import JobRequest


def shape_overrides(request: JobRequest, profile: dict[str, Any]) -> dict[str, Any]:
    """submitit parameters for ``request``'s processes and nodes (none for a one-process run)."""
    if request.processes == 1:
        return {}
    overrides: dict[str, Any] = {"nodes": request.nodes, "tasks_per_node": request.processes // request.nodes,
                                 "slurm_srun_args": ["--kill-on-bad-exit=1"]}
    if profile.get("gpus_per_node"):
        overrides["gpus_per_node"] = overrides["tasks_per_node"]
    return overrides
