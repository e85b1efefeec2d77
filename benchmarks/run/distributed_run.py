"""Start a run on as many processes as its recipe asks for: here (spawned), or as the tasks of a SLURM job.

``run_scaled`` is what a launcher's job calls for every run:

* ``recipe.processes == 1``: the ordinary one-process ``trainer.run``;
* inside a SLURM job step with that many tasks (``sbatch --ntasks-per-node ... --nodes ...``, started by
  submitit): every task joins one process group from SLURM's environment
  (``submitit.helpers.TorchDistributedEnvironment``) and trains its rank;
* otherwise, on this machine: ``torch.multiprocessing`` spawns the processes (torchrun-style variables,
  ``gloo`` on the CPU, ``nccl`` with one GPU per process) and waits for them; when one dies the others are
  stopped.

Rank 0 runs ``trainer.run`` (claim, records, failure notes); the other ranks train the same run through a
``FollowerRunDir``, which reads the run directory (checkpoint to resume from) but never writes it.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.run import distributed
from benchmarks.run.checkpoint import CheckpointUnusable
from benchmarks.run.result import ResultRecord
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import RunSpec
from benchmarks.run.trainer_parts import pick_device
from benchmarks.run.tta_spec import TtaSpec

TORCHRUN_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


class FollowerRunDir(RunDir):
    """A run directory as a rank other than 0 sees it: every file readable, none written."""

    def _skip(self, *_: Any, **__: Any) -> None:
        pass

    write_spec = write_metrics = write_result = write_failure = clear_failure = _skip
    write_heartbeat = append_log = mark_done = _skip


def run_scaled(spec: RunSpec | TtaSpec, output: Path, *, device: str = "auto",
               **kwargs: Any) -> ResultRecord | None:
    """Train ``spec`` on ``spec.recipe.processes`` processes (see the module docstring); ``kwargs`` go to
    ``trainer.run``. Returns the run's result (None when stopped early by ``max_epochs``). A test-time
    adaptation run always runs in one process."""
    from benchmarks.run.trainer import run

    if isinstance(spec, TtaSpec):
        return run(spec, output, device=device, **kwargs)
    processes = spec.recipe.processes
    if processes == 1:
        return run(spec, output, device=device, **kwargs)
    if _slurm_tasks() == processes:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return run_rank(spec, output, device=device, **kwargs)
    return spawn_local(spec, output, device=device, **kwargs)


def _slurm_tasks() -> int | None:
    tasks = os.environ.get("SLURM_NTASKS") if os.environ.get("SLURM_JOB_ID") else None
    return int(tasks) if tasks else None


def run_rank(spec: RunSpec, output: Path, *, device: str = "auto", **kwargs: Any) -> ResultRecord | None:
    """This process's rank of a data-parallel run (the torchrun variables must be set)."""
    from benchmarks.run.trainer import _train, run

    rank = distributed.init_process_group()
    if rank.world_size != spec.recipe.processes:
        raise ValueError(f"invalid world size {rank.world_size}; run {spec.run_id} asks for "
                         f"processes={spec.recipe.processes}")
    where = distributed.rank_device(pick_device(device), rank)
    if rank.is_writer:
        return run(spec, output, device=str(where), **kwargs)
    directory = FollowerRunDir.of(output, spec.run_id)
    if directory.is_done():
        return directory.read_result()
    args = (spec, directory, Path(output), kwargs.get("grid"), kwargs.get("data_root"), where,
            kwargs.get("channels_last", True), kwargs.get("max_epochs"), _quiet, None,
            kwargs.get("eval_test", True))
    try:
        return _train(*args)
    except CheckpointUnusable:  # rank 0 moved it aside and restarts from the beginning: so does this rank
        return _train(*args)


def _quiet(_: str) -> None:
    pass


def spawn_local(spec: RunSpec, output: Path, **kwargs: Any) -> ResultRecord | None:
    """Run the ``spec.recipe.processes`` ranks as processes on this machine and wait for them; returns the
    run's result from its directory. ``kwargs`` must pickle (no ``log``/``on_epoch`` callables: rank 0
    prints)."""
    kwargs.pop("log", None)
    spawn(spec.recipe.processes, _train_rank, spec.to_dict(), str(output), kwargs)
    directory = RunDir.of(output, spec.run_id)
    return directory.read_result() if directory.is_done() else None


def _train_rank(spec_dict: dict[str, Any], output: str, kwargs: dict[str, Any]) -> None:
    run_rank(RunSpec.from_dict(spec_dict), Path(output), **kwargs)


def spawn(world_size: int, fn: Callable[..., Any], *args: Any) -> None:
    """torchrun on this machine: ``fn(*args)`` in ``world_size`` spawned processes that find each other
    through the torchrun variables; raises when one fails (the others are then stopped). ``fn`` and ``args``
    must pickle; the caller's main module must be import-safe (``if __name__ == "__main__"``)."""
    import torch.multiprocessing as mp

    # this process's threads shared out, so G processes do not each start a thread per core (and a CPU run
    # is reproducible: its float sums depend on the thread count)
    threads = max(1, torch.get_num_threads() // world_size)
    mp.spawn(_spawned, args=(world_size, _free_port(), threads, fn, args), nprocs=world_size, join=True)


def _spawned(rank: int, world_size: int, port: int, threads: int, fn: Callable[..., Any],
             args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    try:
        fn(*args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
