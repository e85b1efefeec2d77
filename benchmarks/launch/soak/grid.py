"""The soak grids: many tiny runs (real UCI optdigits, a few steps each) and one run that diverges.

The main grid has one FP parent per seed and QAT children over methods × bits. The second grid holds one
LSQ child whose QAT learning rate is absurd, so it diverges at its first steps; its FP parent has the main
grid's seed-0 recipe, hence the main grid's run id, so two launchers claim that parent at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

TASK = {"dataset": "optdigits", "archs": ["dann_digits"], "recipe": "tiny", "test_subsample": 300}
FP_RECIPE = {"epochs": 2, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "steps_per_epoch": 6,
             "weight_decay": 0.0001}
QAT_RECIPE = {**FP_RECIPE, "lr": 0.01}
DIVERGING_LR = 1.0e12  # lsq's weights and step sizes overflow within a few steps


@dataclass(frozen=True)
class SoakSize:
    """How big the main grid is: runs = seeds × (1 + len(methods) × len(bits)), plus the diverging one."""

    seeds: int
    methods: tuple[str, ...]
    bits: tuple[str, ...]

    @property
    def runs(self) -> int:
        return self.seeds * (1 + len(self.methods) * len(self.bits)) + 1


SHORT = SoakSize(seeds=3, methods=("lsq", "dorefa"), bits=("4/4", "2/2"))  # 16 runs
LONG = SoakSize(seeds=6, methods=("lsq", "dorefa", "alignq"), bits=("4/4", "3/3", "2/2"))  # 61 runs


def _grid(name: str, methods: list[str], bits: list[str], seeds: list[int], qat: dict) -> dict:
    return {"name": name, "description": "soak test grid (slurm/soak.py)", "methods": ["fp", *methods],
            "bits": bits, "seeds": seeds, "layer_policy": "paper", "tasks": [TASK],
            "recipes": {"tiny": {"full": {"fp": FP_RECIPE, "qat": qat}}}}


def write_grids(folder: Path, size: SoakSize, tag: str) -> tuple[Path, Path]:
    """Write the main grid and the diverging one into ``folder``; ``tag`` makes their names (and so their
    SLURM job names) unique to this soak, so faults only ever hit this soak's jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "soak.yaml"
    main.write_text(yaml.safe_dump(_grid(f"soak-{tag}", list(size.methods), list(size.bits),
                                         list(range(size.seeds)), QAT_RECIPE), sort_keys=False))
    diverging = folder / "soak-diverge.yaml"
    diverging.write_text(yaml.safe_dump(_grid(f"soakdiv-{tag}", ["lsq"], ["4/4"], [0],
                                              {**QAT_RECIPE, "lr": DIVERGING_LR}), sort_keys=False))
    return main, diverging
