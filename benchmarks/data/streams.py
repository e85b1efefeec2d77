"""Continual test-time streams: one segment of corrupted test images per corruption, in CoTTA's order.

A stream is a sequence of segments (corruption, images, labels). Each segment holds the same seeded subset of
the clean test split, corrupted at the stream's severity (synthetic), or the images of a released benchmark
(CIFAR-10-C / CIFAR-100-C / ImageNet-C files under the data root). Within a segment the order is a seeded
shuffle, or, with ``imbalance`` (a Dirichlet concentration), a label-shifted order: the class mix drifts from
batch to batch, as in practical-TTA protocols (NOTE, RoTTA), so classes arrive non-i.i.d.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmarks.data.base import ImageTensors
from benchmarks.data.cache import cached
from benchmarks.data.corruptions import CONTINUAL_ORDER, corrupt
from benchmarks.data.corruptions.apply import check_corruption
from benchmarks.data.corruptions.files import load_cifar_c, load_imagenet_c

SOURCES = ("synthetic", "cifar10-c", "cifar100-c", "imagenet-c")
RELEASED_DIRS = {"cifar10-c": "CIFAR-10-C", "cifar100-c": "CIFAR-100-C", "imagenet-c": "ImageNet-C"}
GENERATOR_VERSION = 1  # bump when a corruption function changes: cached segments are keyed by it


@dataclass(frozen=True)
class StreamSpec:
    """What a continual test stream holds and in which order (CoTTA: 15 corruptions, severity 5, batch
    200)."""

    corruptions: tuple[str, ...] = CONTINUAL_ORDER
    severity: int = 5
    size: int | None = None  # images per corruption (a seeded subset of the test split); None: all
    batch_size: int = 200
    seed: int = 0
    imbalance: float | None = None  # Dirichlet concentration of the label-shifted order; None: shuffled
    source: str = "synthetic"  # synthetic (corrupt the task's clean test split) | a released benchmark

    def __post_init__(self) -> None:
        object.__setattr__(self, "corruptions", tuple(self.corruptions))
        if not self.corruptions:
            raise ValueError("a stream needs at least one corruption")
        for name in self.corruptions:
            check_corruption(name, self.severity)
        if self.source not in SOURCES:
            raise ValueError(f"unknown stream source {self.source!r}; valid: {', '.join(SOURCES)}")
        for key, value in (("size", self.size), ("batch_size", self.batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                raise ValueError(f"invalid stream {key} {value!r}; expected an integer >= 2")
        concentration = self.imbalance
        if concentration is not None and not (isinstance(concentration, (int, float)) and concentration > 0):
            raise ValueError(f"invalid stream imbalance {self.imbalance!r}; "
                             "expected a Dirichlet concentration > 0")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["corruptions"] = list(self.corruptions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSpec":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown stream key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass
class Segment:
    """One domain of the stream: its corruption and its images in stream order."""

    corruption: str
    data: ImageTensors


def build_stream(spec: StreamSpec, clean_test: ImageTensors | None, dataset: str,
                 root: Path | None = None) -> list[Segment]:
    """The stream's segments in order. ``clean_test`` (synthetic streams) is the task's clean test split;
    released benchmarks are read from ``<root>/<CIFAR-10-C|CIFAR-100-C|ImageNet-C>``. Synthetic segments are
    cached under ``<root>/cache`` when ``root`` is given (they are deterministic per seed)."""
    segments = []
    for index, name in enumerate(spec.corruptions):
        if spec.source == "synthetic":
            if clean_test is None:
                raise ValueError("a synthetic stream needs the clean test split")
            data = _synthetic_segment(spec, clean_test, dataset, name, root)
        else:
            directory = Path(root or ".") / RELEASED_DIRS[spec.source]
            loader = load_imagenet_c if spec.source == "imagenet-c" else load_cifar_c
            data = loader(directory, name, spec.severity)
            if spec.size is not None and spec.size < len(data):
                data = data.subset(_subset(len(data), spec.size, spec.seed))
        order = _order(data.labels, spec, index)
        segments.append(Segment(name, data.subset(order)))
    return segments


def _subset(n: int, size: int, seed: int) -> torch.Tensor:
    """The same seeded subset of the clean images for every corruption (CIFAR-10-C corrupts one test set)."""
    perm = np.random.default_rng([seed, 104729]).permutation(n)[:size]
    return torch.from_numpy(np.sort(perm))


def _synthetic_segment(spec: StreamSpec, clean: ImageTensors, dataset: str, name: str,
                       root: Path | None) -> ImageTensors:
    chosen = _subset(len(clean), spec.size, spec.seed) if spec.size and spec.size < len(clean) else None
    base = clean.subset(chosen) if chosen is not None else clean

    def build() -> dict:
        return {"images": corrupt(base.images, name, spec.severity, spec.seed), "labels": base.labels}

    key = {"v": GENERATOR_VERSION, "dataset": dataset, "corruption": name, "severity": spec.severity,
           "seed": spec.seed, "size": spec.size, "n": len(clean), "numpy": np.__version__}
    tensors = cached(root, f"stream-{dataset}-{name}", key, build) if root is not None else build()
    return ImageTensors(tensors["images"], tensors["labels"])


def _order(labels: torch.Tensor, spec: StreamSpec, index: int) -> torch.Tensor:
    rng = np.random.default_rng([spec.seed, 7, index])
    if spec.imbalance is None:
        return torch.from_numpy(rng.permutation(len(labels)))
    return torch.from_numpy(label_shift_order(labels.numpy(), spec.batch_size, spec.imbalance, rng))


def label_shift_order(labels: np.ndarray, batch_size: int, alpha: float,
                      rng: np.random.Generator) -> np.ndarray:
    """A class-imbalanced order: each class spreads its samples over the stream's time slots (batches) in
    Dirichlet(alpha) proportions, so a small alpha puts most of a class in a few batches (non-i.i.d.)."""
    slots = max(1, int(np.ceil(len(labels) / batch_size)))
    slot_of = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        share = rng.dirichlet(np.full(slots, alpha))
        slot_of[members] = rng.choice(slots, size=len(members), p=share)
    return np.lexsort((rng.random(len(labels)), slot_of))  # by slot, shuffled within a slot


def stream_batches(segment: Segment, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 image and label batches in stream order; a last batch of one image joins the one before it
    (batch-statistics methods need two)."""
    n = len(segment.data)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        yield segment.data.images[start:stop], segment.data.labels[start:stop]
