"""Functions the distributed tests run in spawned ranks (importable by reference, as spawning requires)."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from benchmarks.run.distributed_run import run_rank
from benchmarks.run.spec import RunSpec


def quiet(_: str) -> None:
    pass


def train_all(spec_dicts: list[dict[str, Any]], output: str | list[str]) -> None:
    """This rank's part of every run, one after the other, in one process group (into ``output``, or each
    into its own output)."""
    outputs = [output] * len(spec_dicts) if isinstance(output, str) else output
    for spec_dict, out in zip(spec_dicts, outputs, strict=True):
        run_rank(RunSpec.from_dict(spec_dict), Path(out), log=quiet)


def train_until_killed(spec_dict: dict[str, Any], output: str, epoch: int, position: int) -> None:
    """Train, and SIGKILL this process (rank 0) right after it wrote the step checkpoint of ``epoch``
    (0-based) at ``position``: a preemption without warning, with that checkpoint the last one on disk."""
    import benchmarks.run.trainer as trainer
    from benchmarks.run import distributed

    write = trainer.save_checkpoint

    def write_then_die(path, state, *args):
        write(path, state, *args)
        if distributed.is_writer() and (state["epoch"], state.get("position")) == (epoch, position):
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.save_checkpoint = write_then_die
    spec = RunSpec.from_dict(spec_dict)
    if spec.recipe.processes == 1:
        trainer.run(spec, Path(output), log=quiet)
    else:
        run_rank(spec, Path(output), log=quiet)


def spawn_until_killed(spec_dict: dict[str, Any], output: str, epoch: int, position: int) -> None:
    """``train_until_killed`` in this process (one process) or on the spec's processes, spawned here."""
    from benchmarks.run.distributed_run import spawn

    processes = spec_dict["recipe"].get("processes", 1)
    if processes == 1:
        train_until_killed(spec_dict, output, epoch, position)
    else:
        spawn(processes, train_until_killed, spec_dict, output, epoch, position)
