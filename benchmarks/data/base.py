"""Data contract shared by every dataset, protocol and the trainer.

A *dataset* (registered by name, see ``registry.py``) yields in-memory uint8 image tensors or, for large
image folders, a torch ``Dataset``. A *task* (``tasks.py``) turns one or more datasets into what a run
trains and evaluates on: labelled source splits, unlabelled target splits, a validation split carved
from the training data, and one test split per evaluated domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageTensors:
    """A split held in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N,C,H,W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError("images and labels differ in length")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageTensors":
        return ImageTensors(self.images[index], self.labels[index])

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class DomainSplits:
    """Train and test splits of one domain (e.g. ``mnist`` or ``office31/amazon``)."""

    name: str
    train: ImageTensors
    test: ImageTensors


@dataclass
class DatasetInfo:
    """Static facts about a registered dataset."""

    name: str
    num_classes: int
    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    family: str | None = None  # multi-domain family, e.g. "digits" or "office31"
    provenance: str = ""


@dataclass
class TaskData:
    """Everything one run sees.

    ``sources`` are labelled training splits (domain id = index); ``targets`` are *unlabelled* training
    splits (their labels are kept only so tests can prove they are never used: the trainer must not read
    them); ``val`` is carved from the source training data; ``tests`` maps a domain name to its test split;
    ``primary_test`` is the domain whose accuracy is the run's headline number.
    """

    name: str
    num_classes: int
    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sources: list[DomainSplits]
    targets: list[DomainSplits]
    val: ImageTensors
    tests: dict[str, ImageTensors]
    primary_test: str
    train_class_counts: list[int]
    augment: str = "none"  # "none" | "crop_flip" (random crop, padding 4, horizontal flip) | "crop" (no flip)
    notes: dict = field(default_factory=dict)

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.sources] + [d.name for d in self.targets]
