"""ImageNet (ILSVRC-2012) from its folder layout, through torchvision, with a fast DataLoader path.

Layout under ``<data root>/imagenet/`` (docs/distributed.md):

* ``train/<wnid>/*.JPEG``: 1000 class folders (the class index is the folder's rank in sorted order, as
  ``torchvision.datasets.ImageFolder``);
* ``val/``: either the same 1000 class folders (as the widely used ``valprep.sh`` arranges them), or the
  50,000 images flat (``val/ILSVRC2012_val_00000001.JPEG``...) with ``LOC_val_solution.csv`` beside
  ``train/`` and ``val/`` (Kaggle's ILSVRC layout: ``ImageId,PredictionString``, whose first token is the
  image's wnid).

The fast path (``ImageNetStream``): one DataLoader per split, kept for the whole run, with worker processes
that decode and augment (RandomResizedCrop + flip for training, Resize 256 + CentreCrop 224 for evaluation),
pinned memory on CUDA and persistent workers. Reproducible: the epoch's order is a permutation seeded by
(seed, epoch), each data-parallel rank takes its rows of every global batch (as ``Batches.shard`` does for
in-memory data), and each sample's random crop is seeded by (seed, epoch, index), so neither the worker count
nor a mid-epoch resume (``start_batch``: the batches already trained are skipped without being decoded)
changes a single pixel. The uint8 batch is normalised on the device.

``load_imagenet`` (the registry's in-memory loader) decodes a whole folder into memory at 224 px: fine for
a small subset or a test folder, not for the full 1.28 M training images (about 190 GB as uint8).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.batches import normalise
from benchmarks.data.tv import transforms

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
VAL_LABELS = "LOC_val_solution.csv"
PREFETCH = 2  # batches each worker decodes ahead: 2 keeps a worker busy while the step runs (torch's default)


def imagenet_dir(root: Path) -> Path:
    return Path(root) / "imagenet"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def imagenet_samples(root: Path, split: str) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(image path, class index)`` of every image of ``split`` (train | val), and the class wnids."""
    base = imagenet_dir(root)
    train = base / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"ImageNet not found at {base}; expected {train}/<wnid>/*.JPEG "
                                "(docs/distributed.md)")
    if split not in ("train", "val"):
        raise ValueError(f"invalid ImageNet split {split!r}; valid: train, val")
    classes = _class_folders(train)
    index = {wnid: i for i, wnid in enumerate(classes)}
    folder = base / split
    if split == "train" or _class_folders(folder):
        found = [(path, index[wnid]) for wnid in _class_folders(folder) for path in _images(folder / wnid)]
        return found, classes
    labels = base / VAL_LABELS
    if not labels.exists():
        raise FileNotFoundError(f"{folder} holds images without class folders and {labels} is missing; "
                                "valid val layouts: val/<wnid>/*.JPEG, or flat val/*.JPEG with "
                                f"{VAL_LABELS}")
    with labels.open() as handle:
        wnid_of = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(handle)}
    return [(path, index[wnid_of[path.stem]]) for path in _images(folder)], classes


def train_transform(size: int) -> Any:
    return transforms.Compose([transforms.RandomResizedCrop(size, antialias=True),
                               transforms.RandomHorizontalFlip(), transforms.PILToTensor()])


def eval_transform(size: int) -> Any:
    return transforms.Compose([transforms.Resize(size * 256 // 224, antialias=True),
                               transforms.CenterCrop(size), transforms.PILToTensor()])


class SeededImages(torch.utils.data.Dataset):
    """Images decoded as RGB uint8 (3, H, W). A key ``epoch * len + index`` names a sample of an epoch: its
    random augmentation is seeded by (seed, epoch, index) alone.

    Paths and labels are kept in two numpy arrays, not a list of Python objects: a forked worker that reads a
    list touches every object's reference count and so copies the pages (pytorch/pytorch#13246). ImageNet's
    1.28 M ``(Path, label)`` pairs are about 500 MB of objects; its path array is 68 MB, and stays shared."""

    def __init__(self, samples: Sequence[tuple[str | Path, int]], transform: Any, seed: int) -> None:
        self.paths = np.array([os.fsencode(path) for path, _ in samples], dtype=np.bytes_)
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.transform, self.seed = transform, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, int]:
        epoch, index = divmod(int(key), len(self.labels))
        path, label = os.fsdecode(self.paths[index]), int(self.labels[index])
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            return self.transform(rgb), label


class EpochBatches(torch.utils.data.Sampler):
    """Batches of sample keys for one rank: the global batches of the epoch's seeded order, this rank's rows
    of each, from ``start_batch`` on (``set_epoch`` before each epoch, as DistributedSampler)."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True) -> None:
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start_batch, self.stop_batch = 0, 0, None

    def set_epoch(self, epoch: int, start_batch: int = 0, stop_batch: int | None = None) -> None:
        """Batches ``[start_batch, stop_batch)`` of ``epoch`` (``stop_batch`` None: to the epoch's end)."""
        self.epoch, self.start_batch, self.stop_batch = epoch, start_batch, stop_batch

    def __len__(self) -> int:
        full = self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)
        if self.stop_batch is not None:
            full = min(full, self.stop_batch)
        return max(0, full - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1009 + self.epoch)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        keys = order + self.epoch * self.size
        for b in range(self.start_batch, self.start_batch + len(self)):
            batch = keys[b * self.batch_size:(b + 1) * self.batch_size]
            # rows [r·B/G, (r+1)·B/G) when G divides B (training batches); an evaluation batch of any size
            # (the last one is short) is split as evenly as it goes, and a rank left without rows skips it
            rows = batch.tensor_split(self.world_size)[self.rank]
            if len(rows):
                yield rows.tolist()


class ImageNetStream:
    """One split through one long-lived DataLoader: ``epoch(e, start_batch, stop_batch)`` yields normalised
    batches. ``persistent=False`` starts the workers anew for each pass (an evaluation split read once an
    epoch need not hold worker processes between passes)."""

    def __init__(self, samples: Sequence[tuple[str | Path, int]], *, batch_size: int, train: bool, seed: int,
                 size: int = 224, rank: int = 0, world_size: int = 1, workers: int = 8,
                 device: str | torch.device = "cpu", mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                 std: tuple[float, ...] = (0.229, 0.224, 0.225), persistent: bool = True) -> None:
        self.device = torch.device(device)
        self.mean, self.std = mean, std
        dataset = SeededImages(samples, train_transform(size) if train else eval_transform(size), seed)
        self.sampler = EpochBatches(len(samples), batch_size, seed, shuffle=train, rank=rank,
                                    world_size=world_size, drop_last=train)
        self.pin = self.device.type == "cuda"
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers, pin_memory=self.pin,
            persistent_workers=persistent and workers > 0, prefetch_factor=PREFETCH if workers > 0 else None)

    def epoch(self, epoch: int, start_batch: int = 0,
              stop_batch: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch, start_batch, stop_batch)
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=self.pin)
            y = y.to(self.device, non_blocking=self.pin)
            yield normalise(x, self.mean, self.std), y


def write_fake_imagenet(root: Path, *, classes: int = 4, train_per_class: int = 10, val_per_class: int = 3,
                        height: int = 40, width: int = 44, seed: int = 0) -> Path:
    """A tiny ILSVRC-style folder of random-pixel JPEGs under ``<root>/imagenet`` (train and val class
    folders; heights vary by a few pixels, as real images do): for tests and the stream benchmark."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{1440764 + c:08d}" for c in range(classes)]
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for wnid in wnids:
            folder = imagenet_dir(root) / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(height + i % 5, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")
    return imagenet_dir(root)


def load_imagenet(root: Path, *, download: bool = False, verify_md5: bool = True,
                  size: tuple[int, int] = (224, 224)) -> DomainSplits:
    """The registry's in-memory loader: every train and val image decoded at ``size`` (centre crop)."""
    if download:
        raise ValueError("ImageNet has no download; place the ILSVRC-2012 folders yourself "
                         "(docs/distributed.md)")
    return DomainSplits("imagenet", _decode(root, "train", size[0]), _decode(root, "val", size[0]))


def _decode(root: Path, split: str, size: int) -> ImageTensors:
    samples, _ = imagenet_samples(root, split)
    dataset = SeededImages(samples, eval_transform(size), seed=0)
    if not samples:
        empty = torch.zeros(0, 3, size, size, dtype=torch.uint8)
        return ImageTensors(empty, torch.zeros(0, dtype=torch.long))
    xs, ys = zip(*(dataset[i] for i in range(len(samples))))
    return ImageTensors(torch.stack(xs), torch.tensor(ys))
