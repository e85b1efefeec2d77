"""Functions the distributed tests run in spawned ranks (importable by reference, as spawning requires)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.run.distributed_run import run_rank
from benchmarks.run.spec import RunSpec


def quiet(_: str) -> None:
    pass


def train_all(spec_dicts: list[dict[str, Any]], output: str) -> None:
    """This rank's part of every run, one after the other, in one process group."""
    for spec_dict in spec_dicts:
        run_rank(RunSpec.from_dict(spec_dict), Path(output), log=quiet)
