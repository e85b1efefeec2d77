"""Image-folder datasets (``<dir>/<class>/<image>``, torchvision ``ImageFolder``): in-memory loading and a
DataLoader path for folders too large to hold in memory (Office-31 at 224 px, ImageNet-size data).

Both decode with PIL and resize deterministically; workers only decode. All *random* augmentation happens per
batch on tensors with the caller's generator (``batches.augment_batch``), so the DataLoader path yields the
same ``(x float32 normalised, y int64)`` contract as ``iterate_batches`` and is reproducible from the
generator.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import torch

from benchmarks.data.base import ImageTensors
from benchmarks.data.batches import normalise, random_flip
from benchmarks.data.tv import datasets, transforms


def _to_rgb(image):  # module-level (not a lambda) so DataLoader workers can pickle it under spawn/forkserver
    return image.convert("RGB")


def _folder(path: Path, size: tuple[int, int], num_classes: int | None = None):
    if not path.is_dir():
        raise FileNotFoundError(f"image folder not found at {path}; expected {path}/<class>/<image files>")
    tf = transforms.Compose([transforms.Lambda(_to_rgb),
                             transforms.Resize(tuple(size), antialias=True), transforms.PILToTensor()])
    ds = datasets.ImageFolder(str(path), transform=tf)
    if num_classes is not None and len(ds.classes) != num_classes:
        raise ValueError(f"{path} has {len(ds.classes)} class folders, expected {num_classes}")
    return ds


def load_image_folder(path: str | os.PathLike, size: tuple[int, int], num_classes: int | None = None,
                      num_workers: int = 0) -> ImageTensors:
    """Decode every image under ``path/<class>/`` into uint8 (N, 3, H, W) resized to ``size`` (classes sorted
    by folder name, as ImageFolder does)."""
    ds = _folder(Path(path), size, num_classes)
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False, num_workers=num_workers)
    xs, ys = zip(*loader) if len(ds) else ((torch.zeros(0, 3, *size, dtype=torch.uint8),), (torch.zeros(0),))
    return ImageTensors(torch.cat(xs), torch.cat(ys).long())


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


def random_window(x: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Per-sample random ``size`` window of a larger square-excess batch (Resize(256) + RandomCrop(224)),
    vectorised with the same advanced-indexing gather as ``batches.random_crop``."""
    b = x.shape[0]
    ey, ex = x.shape[-2] - size[0], x.shape[-1] - size[1]
    if ey < 0 or ex < 0:
        raise ValueError(f"window {size} larger than images {tuple(x.shape[-2:])}")
    oy = torch.randint(0, ey + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, ex + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(size[0], device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(size[1], device=x.device))[:, None, :]
    return x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def folder_batches(path: str | os.PathLike, batch_size: int, *, mean: tuple[float, ...],
                   std: tuple[float, ...], train: bool, generator: torch.Generator,
                   size: tuple[int, int] = (224, 224), resize: tuple[int, int] = (256, 256),
                   num_workers: int = 4, pin_memory: bool | None = None,
                   device: str | torch.device = "cpu", drop_last: bool | None = None,
                   channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch over an image folder through a DataLoader (workers decode + resize to ``resize``).

    ``train=True``: shuffled (order from ``generator``), random ``size`` window + horizontal flip per batch;
    ``train=False``: folder order, centre crop. Pinned memory defaults to on for CUDA devices.
    """
    device = torch.device(device)
    pin = device.type == "cuda" if pin_memory is None else pin_memory
    ds = _folder(Path(path), resize)
    # The loader's own generator (seeded from ours) fixes shuffle order and worker seeds.
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, generator=g,
                                         num_workers=num_workers, pin_memory=pin,
                                         drop_last=train if drop_last is None else drop_last,
                                         persistent_workers=False)
    for x, y in loader:
        x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin).long()
        if train:
            x = random_flip(random_window(x, size, generator), generator)
        else:
            x = center_crop(x, size)
        x = normalise(x, mean, std)
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y

