"""Split and conversion helpers on uint8 tensors: stratified splits, per-class subsampling, common
format.

All randomness comes from a local ``torch.Generator`` seeded by the caller, never the global RNG, so a split
is a pure function of (data, seed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.data.base import ImageTensors


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def stratified_split(split: ImageTensors, fraction: float, seed: int) -> tuple[ImageTensors, ImageTensors]:
    """Split into (rest, held_out) with ``round(fraction * n_c)`` of each class held out (at least one per
    class with >= 2 images when fraction > 0), chosen by a seeded permutation. Both parts keep the original
    order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    g = _gen(seed)
    held = torch.zeros(len(split), dtype=torch.bool)
    for c in torch.unique(split.labels).tolist():
        idx = torch.nonzero(split.labels == c).flatten()
        k = int(round(fraction * len(idx)))
        if fraction > 0 and k == 0 and len(idx) >= 2:
            k = 1
        held[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return split.subset(torch.nonzero(~held).flatten()), split.subset(torch.nonzero(held).flatten())


def per_class_subset(split: ImageTensors, counts: list[int], seed: int) -> ImageTensors:
    """Keep ``counts[c]`` images of class ``c`` (seeded choice); raises if a class has fewer available."""
    g = _gen(seed)
    keep = []
    for c, n in enumerate(counts):
        idx = torch.nonzero(split.labels == c).flatten()
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images, {n} requested")
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    order = torch.sort(torch.cat(keep)).values if keep else torch.zeros(0, dtype=torch.long)
    return split.subset(order)


def concat(parts: list[ImageTensors]) -> ImageTensors:
    return ImageTensors(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def convert(images: torch.Tensor, channels: int, size: tuple[int, int], chunk: int = 8192) -> torch.Tensor:
    """Convert uint8 (N,C,H,W) to ``channels`` and ``size`` once, staying uint8.

    Grey -> RGB replicates the channel; RGB -> grey uses ITU-R 601 luma. Resizing is bilinear with antialias
    (for downsampling), done in chunks to bound the float32 memory peak.
    """
    n, c, h, w = images.shape
    if c == channels and (h, w) == tuple(size):
        return images
    out = torch.empty((n, channels, *size), dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for s in range(0, n, chunk):
        x = images[s:s + chunk]
        if (h, w) != tuple(size) or (c == 3 and channels == 1):
            x = x.float()
            if c == 3 and channels == 1:
                x = (x * luma).sum(1, keepdim=True)
            if (h, w) != tuple(size):
                x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] not in (1, 3) or (x.shape[1] == 3 and channels not in (1, 3)):
            raise ValueError(f"cannot convert {c} channels to {channels}")
        out[s:s + chunk] = x
    return out


def convert_split(split: ImageTensors, channels: int, size: tuple[int, int]) -> ImageTensors:
    return ImageTensors(convert(split.images, channels, size), split.labels)
