"""Seeded per-epoch batch streams for every domain of a task: the same order on every run and every resume."""
from __future__ import annotations

import contextlib

import torch

from benchmarks.data.base import TaskData
from benchmarks.data.batches import iterate_batches, num_batches
from benchmarks.run.spec import RunSpec
from methods import DomainBatch

EVAL_BATCH = 1000


class Batches:
    """Seeded per-epoch batch streams for every domain of a task."""

    def __init__(self, task: TaskData, spec: RunSpec, device: torch.device, channels_last: bool) -> None:
        self.task, self.spec, self.device, self.channels_last = task, spec, device, channels_last
        # (rank, world size) of a data-parallel run: training batches keep that rank's rows (distributed.py)
        self.shard: tuple[int, int] | None = None

    def _stream(self, split, epoch: int, domain: int, cycle: int = 0, shuffle: bool = True,
                augment: bool = True,
                drop_last: bool = True, batch_size: int | None = None):
        generator = torch.Generator().manual_seed(((self.spec.seed * 1009 + epoch) * 31 + domain) * 7 + cycle)
        size = batch_size or self.spec.recipe.batch_size
        rows = None
        if self.shard is not None and shuffle:  # training streams only: every rank evaluates everything
            rank, world = self.shard
            rows = slice(rank * size // world, (rank + 1) * size // world)
        return iterate_batches(split, size, mean=self.task.mean,
                               std=self.task.std, augment=self.task.augment if augment else "none",
                               shuffle=shuffle, drop_last=drop_last, generator=generator, device=self.device,
                               channels_last=self.channels_last, rows=rows)

    def epoch(self, epoch: int, domain: int):
        return self._stream(self.task.sources[domain].train, epoch, domain)

    def steps_per_epoch(self) -> int:
        steps = num_batches(len(self.task.sources[0].train), self.spec.recipe.batch_size)
        if steps < 1:
            raise ValueError(f"batch size {self.spec.recipe.batch_size} exceeds the training set")
        return steps

    def training_parts(self, epoch: int, use_targets: bool, skip: int = 0):
        """Yields, per step, one DomainBatch per source (labelled) and per target (unlabelled, y=None).
        The first ``skip`` steps (trained before a mid-epoch resume; the caller skips them) are still drawn:
        each batch's augmentation advances the seeded generator the later batches draw from."""
        sources = [self.epoch(epoch, d) for d in range(len(self.task.sources))]
        targets = [_cycle(lambda c, t=t, d=d: self._stream(t.train, epoch, d, c))
                   for d, t in enumerate(self.task.targets,
                                         start=len(self.task.sources))] if use_targets else []
        for batches in zip(*sources):
            parts = [DomainBatch(x, y, d) for d, (x, y) in enumerate(batches)]
            for d, stream in enumerate(targets, start=len(self.task.sources)):
                parts.append(DomainBatch(next(stream)[0], None, d))  # target labels never leave the loader
            yield parts

    def evaluation(self, split):
        return self._stream(split, 0, 0, shuffle=False, augment=False, drop_last=False, batch_size=EVAL_BATCH)

    def as_rank_zero(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """In memory every rank evaluates the whole split with its own model: nothing to change."""
        return contextlib.nullcontext()

    def gathered(self, logits: torch.Tensor, labels: torch.Tensor,
                 split) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's logits as evaluated: all of them, in every process."""
        return logits, labels

    def domain_id(self, name: str) -> int | None:
        names = self.task.domain_names
        return names.index(name) if name in names else None


def _cycle(make):
    cycle = 0
    while True:
        yield from make(cycle)
        cycle += 1
