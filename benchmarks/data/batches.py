"""Fast input path: batches straight from uint8 tensors, with augmentation done per batch on tensors.

``iterate_batches`` is one epoch. All randomness (shuffle order, crop offsets, flip mask) is drawn on the CPU
from the *passed* generator only, so a given generator state yields identical batches on any device; the uint8
batch is moved to ``device`` first and augmented / normalised there (on a GPU the augmentation runs on the
GPU).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from benchmarks.data.base import ImageTensors

AUGMENTS = ("none", "crop_flip", "crop", "domainbed")  # domainbed: DomainBed's image-suite transforms


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Batches per epoch over ``n`` samples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop with ``padding`` zero pixels on each side
    (torchvision RandomCrop(size, padding)), vectorised: pad once, then gather each sample's window with
    advanced indexing (no loop over samples)."""
    b, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))  # zero padding, dtype preserved
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices separated by a slice put the indexed dims first: result is (B, H, W, C).
    return xp[bidx, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontal flip of a random half (p = 0.5 per sample), selected by mask."""
    mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def augment_batch(x: torch.Tensor, augment: str, generator: torch.Generator,
                  padding: int = 4) -> torch.Tensor:
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment '{augment}'; valid: {', '.join(AUGMENTS)}")
    if augment in ("crop", "crop_flip"):
        x = random_crop(x, padding, generator)
    if augment == "crop_flip":
        x = random_flip(x, generator)
    if augment == "domainbed":
        from benchmarks.data.dg_augment import domainbed_augment  # imports torchvision: only when used

        x = domainbed_augment(x, generator)
    return x


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 -> float32 in one fused step: (x/255 - mean)/std == x*(1/(255 std)) - mean/std."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=x.device).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], device=x.device).view(1, -1, 1, 1)
    return x.float() * scale - shift


def iterate_batches(split: ImageTensors, batch_size: int, *, mean: tuple[float, ...], std: tuple[float, ...],
                    augment: str = "none", shuffle: bool = True, drop_last: bool = True,
                    generator: torch.Generator, device: str | torch.device = "cpu",
                    channels_last: bool = False,
                    rows: slice | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x float32 normalised (B,C,H,W), y int64 (B,))``. Target splits yield y = -1.

    ``rows``: keep only these rows of every batch (a data-parallel rank's share). The whole batch is still
    gathered and augmented, so the generator advances as in one process and the kept rows are exactly those
    rows of the one-process batch.

    The split may live on the CPU (each uint8 batch is gathered, pinned when copying to CUDA, and moved) or
    already on ``device`` (move it once with ``ImageTensors(x.to(dev), y.to(dev))``: no copies per batch).
    """
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment '{augment}'; valid: {', '.join(AUGMENTS)}")
    if len(mean) != split.images.shape[1] or len(std) != split.images.shape[1]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {split.images.shape[1]} channels")
    device = torch.device(device)
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    on_host = split.images.device.type == "cpu"
    pin = device.type == "cuda" and on_host
    if not on_host:
        order = order.to(split.images.device)
    for b in range(num_batches(n, batch_size, drop_last)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x, y = split.images[idx], split.labels[idx]
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
        x = augment_batch(x, augment, generator)
        if rows is not None:
            x, y = x[rows], y[rows]
        x = normalise(x, mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, y
