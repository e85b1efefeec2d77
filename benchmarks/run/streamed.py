"""Streamed tasks: a dataset read from its image folders batch by batch, never held in memory.

ImageNet's training split decoded at 224 px is about 190 GB, so a run on it cannot build an in-memory
``TaskData``. For a folder-streamed dataset (``FOLDER_DATASETS``: ``imagenet``; a DomainNet-size folder
would add its ``(root, split) -> (samples, classes)`` function there) the trainer instead gets:

* ``build_streamed_task``: a ``TaskData`` whose splits are ``FolderSplit`` (image paths and labels only): the
  training split minus a seeded, class-stratified ``val_fraction`` held out as validation (the same split
  function as in-memory tasks), and the test split read from ``val/``;
* ``StreamedBatches``: the batch source with ``Batches``' interface, backed by ``ImageNetStream`` (DataLoader
  workers decode and augment, pinned memory on CUDA, persistent training workers): training parts per
  step, the calibration batch, steps per epoch, the rank shard, and evaluation passes.

``batch_source`` is the one place the trainer's batch source is chosen. Resuming mid-epoch
(``training_parts(..., skip=k)``) starts the sampler at batch ``k``: the batches already trained are never
decoded. Evaluation in a data-parallel run: each rank reads and scores its rows of every evaluation batch,
with rank 0's buffers put in for the pass (``as_rank_zero``: without ``sync_bn`` BatchNorm running
statistics, and some methods' statistics, are per rank, and the model written to ``final.pt`` is rank 0's),
and the ranks' logits are gathered in the split's order (``gathered``), so every metric of the record is
computed as in one process. Workers per DataLoader: ``loader_workers`` (docs/distributed.md).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from benchmarks.data.base import DomainSplits, TaskData
from benchmarks.data.imagenet import EpochBatches, ImageNetStream, imagenet_samples
from benchmarks.data.registry import data_root as resolve_root
from benchmarks.data.registry import dataset_info
from benchmarks.data.splits import stratified_split
from benchmarks.run.batches import Batches
from benchmarks.run.spec import RunSpec
from methods import DomainBatch

# dataset name -> (data root, split "train" | "val") -> ((image path, class index) pairs, class names)
FOLDER_DATASETS: dict[str, Callable[[Path, str], tuple[list[tuple[Path, int]], list[str]]]] = {
    "imagenet": imagenet_samples,
}
WORKERS_VARIABLE = "QBENCH_LOADER_WORKERS"
MAX_DEFAULT_WORKERS = 8
EVAL_BATCH = 256  # images per evaluation batch (ImageNet's 1000 logits of each stay on the CPU)


def is_streamed(dataset: str) -> bool:
    return dataset in FOLDER_DATASETS


@dataclass(frozen=True)
class FolderSplit:
    """A split as image paths and labels: what ``stratified_split`` and the scoring code need of a split
    (``len``, ``labels``, ``subset``, ``class_counts``), with no images (there is no ``images`` to read).
    The paths are one numpy array of file-system bytes: 68 MB for ImageNet's 1.28 M, where ``Path``
    objects would take about 500 MB in every rank."""

    paths: np.ndarray
    labels: torch.Tensor

    @classmethod
    def of(cls, samples: list[tuple[Path, int]]) -> "FolderSplit":
        paths = np.array([os.fsencode(path) for path, _ in samples], dtype=np.bytes_)
        return cls(paths, torch.tensor([label for _, label in samples], dtype=torch.long))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "FolderSplit":
        return FolderSplit(self.paths[index.numpy()], self.labels[index])

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    @property
    def samples(self) -> list[tuple[str, int]]:
        return list(zip(map(os.fsdecode, self.paths), self.labels.tolist()))


def build_streamed_task(spec: RunSpec, data_root: str | os.PathLike | None) -> TaskData:
    """The streamed task of ``spec`` (a folder dataset, no target): paths and labels only. Its splits are
    ``FolderSplit`` typed as ``ImageTensors`` for the code that only counts and subsets them."""
    dataset = spec.task.dataset
    if spec.task.target is not None:
        raise ValueError(f"invalid target {spec.task.target!r} for the streamed dataset {dataset!r}; "
                         "valid: none (streamed datasets are single-domain)")
    info = dataset_info(dataset)
    samples = FOLDER_DATASETS[dataset]
    train_samples, classes = samples(resolve_root(data_root), "train")
    # the validation images: the same seeded, class-stratified split as an in-memory task's (seed + 0)
    train, val = stratified_split(cast(Any, FolderSplit.of(train_samples)), spec.task.val_fraction, spec.seed)
    test: Any = FolderSplit.of(samples(resolve_root(data_root), "val")[0])
    side = spec.task.image_size or info.size[0]
    # the class count is the folders' (1000 for ILSVRC-2012; a test folder has a few)
    counts = cast(FolderSplit, train).class_counts(len(classes))
    return TaskData(name=dataset, num_classes=len(classes), channels=3, size=(side, side), mean=info.mean,
                    std=info.std, sources=[DomainSplits(dataset, train, test)], targets=[], val=val,
                    tests={dataset: test}, primary_test=dataset, train_class_counts=counts,
                    augment="random_resized_crop_flip",
                    notes={"streamed": True, "seed": spec.seed, "val_fraction": spec.task.val_fraction,
                           "provenance": {dataset: info.provenance}})


def streamed_task(spec: RunSpec, data_root: str | os.PathLike | None) -> TaskData | None:
    """The streamed task of a folder dataset's ``spec``; None for an in-memory dataset (``build_task``)."""
    if is_streamed(spec.task.dataset):
        return build_streamed_task(spec, data_root)
    if spec.task.image_size is not None:
        raise ValueError(f"invalid image_size {spec.task.image_size!r} for {spec.task.dataset!r}; valid: "
                         f"none (image_size applies to the streamed datasets {', '.join(FOLDER_DATASETS)})")
    return None


def is_streamed_task(task: TaskData) -> bool:
    return bool(task.notes.get("streamed"))


def loader_workers() -> int:
    """DataLoader workers of each stream: ``QBENCH_LOADER_WORKERS`` when set; else, inside a SLURM job, the
    task's CPUs (the profile's ``cpus_per_task``) less one for the training process; else this process's
    share of the machine's CPUs less one, at most 8."""
    value = os.environ.get(WORKERS_VARIABLE)
    if value is not None:
        if not value.isdigit():
            raise ValueError(f"invalid {WORKERS_VARIABLE} {value!r}; valid: an integer >= 0")
        return int(value)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return max(0, int(slurm) - 1)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(0, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0)) // max(1, local_ranks) - 1))


class StreamedBatches:
    """``Batches``' interface over image folders (one source, no targets)."""

    def __init__(self, task: TaskData, spec: RunSpec, device: torch.device, channels_last: bool,
                 workers: int | None = None) -> None:
        self.task, self.spec, self.device, self.channels_last = task, spec, device, channels_last
        self.workers = loader_workers() if workers is None else workers
        self._shard: tuple[int, int] | None = None
        self._train: ImageNetStream | None = None

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world size) of a data-parallel run: training batches keep that rank's rows."""
        return self._shard

    @shard.setter
    def shard(self, value: tuple[int, int] | None) -> None:
        self._shard, self._train = value, None  # the unsharded stream (calibration) and its workers go

    def _stream(self, split: FolderSplit, *, train: bool, batch_size: int, rank: int = 0, world: int = 1,
                persistent: bool = True) -> ImageNetStream:
        return ImageNetStream(split.samples, batch_size=batch_size, train=train, seed=self.spec.seed,
                              size=self.task.size[0], rank=rank, world_size=world, workers=self.workers,
                              device=self.device, mean=self.task.mean, std=self.task.std,
                              persistent=persistent)

    def _training_stream(self) -> ImageNetStream:
        if self._train is None:
            rank, world = self._shard or (0, 1)
            self._train = self._stream(cast(FolderSplit, self.task.sources[0].train), train=True,
                                       batch_size=self.spec.recipe.batch_size, rank=rank, world=world)
        return self._train

    def _layout(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]):
        for x, y in batches:
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y

    def epoch(self, epoch: int, domain: int, start: int = 0):
        if domain != 0:
            raise ValueError(f"invalid domain {domain}; valid: 0 (a streamed task has one source)")
        return self._layout(self._training_stream().epoch(epoch, start, self.steps_per_epoch()))

    def steps_per_epoch(self) -> int:
        steps = len(self.task.sources[0].train) // self.spec.recipe.batch_size
        if steps < 1:
            raise ValueError(f"batch size {self.spec.recipe.batch_size} exceeds the training set")
        return min(steps, self.spec.recipe.steps_per_epoch or steps)

    def training_parts(self, epoch: int, use_targets: bool, skip: int = 0):
        """Per step, one DomainBatch. The first ``skip`` steps (trained before a resume) are yielded empty:
        the sampler starts at batch ``skip``, so their images are never read."""
        if use_targets:
            raise ValueError("invalid protocol 'dann' for a streamed task; valid: standard, source_only")
        for _ in range(skip):
            yield []
        for x, y in self.epoch(epoch, 0, skip):
            yield [DomainBatch(x, y, 0)]

    def evaluation(self, split):
        """The split in order, un-augmented (this rank's rows of every batch in a data-parallel run); the
        workers start for this pass and stop after it."""
        rank, world = self._shard or (0, 1)
        if len(split) < world:  # a rank without a single row would have no logits to gather
            raise ValueError(f"invalid evaluation split of {len(split)} images for {world} processes; "
                             "valid: at least one image per process")
        stream = self._stream(split, train=False, batch_size=EVAL_BATCH, rank=rank, world=world,
                              persistent=False)
        return self._layout(stream.epoch(0))

    @contextlib.contextmanager
    def as_rank_zero(self, model: nn.Module) -> Iterator[None]:
        """Inside, a data-parallel rank's ``model`` holds rank 0's buffers (BatchNorm running statistics,
        method statistics kept per rank), so every rank's shard is scored by the model rank 0 writes; the
        rank's own buffers are put back after. The parameters are the same on every rank already."""
        if self._shard is None:
            yield
            return
        buffers = [b for b in model.buffers()]
        own = [b.detach().clone() for b in buffers]
        for b in buffers:
            dist.broadcast(b.data, 0)
        try:
            yield
        finally:
            for b, saved in zip(buffers, own):
                b.data.copy_(saved)

    def gathered(self, logits: torch.Tensor, labels: torch.Tensor,
                 split) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's (logits, labels) of ``split`` put together in the split's order (a no-op in one
        process): each rank then scores the whole split, as one process would."""
        if self._shard is None:
            return logits, labels
        _, world = self._shard
        rows = [_evaluation_rows(len(split), rank, world) for rank in range(world)]
        # nccl gathers device tensors only; gloo works on the CPU
        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        logits_all, labels_all = (_gather_rows(t.to(device), max(len(r) for r in rows), world)
                                  for t in (logits, labels))
        out_logits = logits.new_empty(len(split), logits.shape[1])
        out_labels = labels.new_empty(len(split))
        for index, theirs, their_labels in zip(rows, logits_all, labels_all):
            out_logits[index] = theirs[:len(index)].cpu()
            out_labels[index] = their_labels[:len(index)].cpu()
        return out_logits, out_labels

    def domain_id(self, name: str) -> int | None:
        names = self.task.domain_names
        return names.index(name) if name in names else None


def _evaluation_rows(size: int, rank: int, world: int) -> torch.Tensor:
    """Indices into a split of ``size`` that ``rank`` evaluates, in the order it yields them."""
    sampler = EpochBatches(size, EVAL_BATCH, seed=0, shuffle=False, rank=rank, world_size=world,
                           drop_last=False)
    return torch.tensor([key for batch in sampler for key in batch], dtype=torch.long)


def _gather_rows(local: torch.Tensor, longest: int, world: int) -> list[torch.Tensor]:
    """Every rank's ``local`` rows (padded to ``longest`` for the collective), in rank order."""
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return parts


BatchSource = Batches | StreamedBatches  # what the trainer and the scoring code read batches from


def batch_source(task: TaskData, spec: RunSpec, device: torch.device, channels_last: bool) -> BatchSource:
    """The trainer's batch source: streamed from the folders for a streamed task, else in memory."""
    if is_streamed_task(task):
        return StreamedBatches(task, spec, device, channels_last)
    return Batches(task, spec, device, channels_last)
