"""Mid-epoch checkpoints: every N steps and/or every N minutes (``recipe.checkpoint_every_*``).

An ImageNet epoch takes an hour on one GPU; a preempted run that resumed from its last epoch end would lose
up to that. A step checkpoint holds, besides the usual state, ``position`` (the steps done in the current
epoch) and the epoch's running loss and accuracy tallies. The epoch's batch order is a pure function of
(seed, epoch, domain), so the resumed run draws the same order, skips the ``position`` batches already
trained, and continues with the same weights, optimizer, method and RNG state: its final weights equal an
uninterrupted run's (tests/distributed/test_midepoch_resume.py). No step checkpoint is written at the last
step of an epoch: the epoch-end checkpoint follows at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.run.distributed import DataParallel
from benchmarks.run.spec import Recipe


class StepCheckpoints:
    """Decides after each step whether to write a mid-epoch checkpoint (the same decision on every rank)."""

    def __init__(self, recipe: Recipe, parallel: DataParallel | None) -> None:
        self.every_steps = recipe.checkpoint_every_steps
        minutes = recipe.checkpoint_every_minutes
        self.every_s = None if minutes is None else 60.0 * minutes
        self.parallel = parallel
        self.last = time.monotonic()

    def due(self, done_in_epoch: int, steps: int) -> bool:
        if done_in_epoch >= steps:
            self.last = time.monotonic()  # the epoch-end checkpoint restarts the clock
            return False
        due = self.every_steps is not None and done_in_epoch % self.every_steps == 0
        if self.every_s is not None:
            late = time.monotonic() - self.last >= self.every_s
            # rank 0's clock decides for all: every rank must take part in the checkpoint's RNG gather
            due = due or (self.parallel.agree(late) if self.parallel is not None else late)
        if due:
            self.last = time.monotonic()
        return due


def epoch_tallies(position: int, loss_sum: torch.Tensor, tally: dict[str, Any]) -> dict[str, Any]:
    """The mid-epoch part of a step checkpoint."""
    return {"position": position, "loss_sum": loss_sum.detach().clone(),
            "correct": tally["correct"].detach().clone(), "seen": int(tally["seen"])}


@dataclass(frozen=True)
class EpochTallies:
    """The running sums of a partly trained epoch, restored into the trainer's tally."""

    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    seen: int = 0

    def restore(self, tally: dict[str, Any]) -> torch.Tensor:
        """Put the counts into ``tally``; returns the loss sum (on the tally's device)."""
        if self.loss_sum is None or self.correct is None:
            raise ValueError("a mid-epoch checkpoint without its tallies")
        device = tally["correct"].device
        tally["correct"], tally["seen"] = self.correct.to(device), self.seen
        return self.loss_sum.to(device)


def resume_position(state: dict[str, Any]) -> tuple[int, EpochTallies]:
    """Take the mid-epoch entries out of a resumed ``state``: (steps done in its epoch, its tallies)."""
    position = int(state.pop("position", 0))
    tallies = EpochTallies(state.pop("loss_sum", None), state.pop("correct", None), int(state.pop("seen", 0)))
    return position, tallies
