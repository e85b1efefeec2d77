"""Apply a corruption to a batch of uint8 (N, C, H, W) images, deterministically per seed and per image.

Every image draws its randomness from its own generator seeded by (seed, corruption, severity, image index),
so a corrupted image does not depend on batching, on which other images are corrupted, or on the order.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.data.corruptions.functions import BENCHMARK, EXTRA

CONTINUAL_ORDER: tuple[str, ...] = tuple(BENCHMARK)
EXTRA_NAMES: tuple[str, ...] = tuple(EXTRA)
ALL: tuple[str, ...] = CONTINUAL_ORDER + EXTRA_NAMES
SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 32  # the constants are for 32x32 images
PADDABLE_SIDE = 28  # 28x28 digits are padded to 32, corrupted, and cropped back


def check_corruption(name: str, severity: int) -> None:
    if name not in ALL:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(ALL)}")
    if severity not in SEVERITIES:
        raise ValueError(f"invalid severity {severity!r}; valid: 1, 2, 3, 4, 5")


def corrupt_image(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 (32, 32, 3) image -> its corrupted uint8 version (truncated, as the reference's np.uint8)."""
    check_corruption(name, severity)
    fn = BENCHMARK.get(name) or EXTRA[name]
    return np.uint8(np.clip(fn(image, severity, rng), 0, 255))


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt uint8 (N, C, H, W) images (C = 1 or 3; H = W = 32, or 28 padded to 32) -> same shape/dtype."""
    check_corruption(name, severity)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    side = images.shape[-1]
    if images.shape[-2] != side or side not in (REFERENCE_SIDE, PADDABLE_SIDE):
        raise ValueError(f"corruptions need 32x32 or 28x28 images, got {tuple(images.shape[-2:])}")
    pad = (REFERENCE_SIDE - side) // 2
    grey = images.shape[1] == 1
    array = images.permute(0, 2, 3, 1).numpy()
    if grey:
        array = np.repeat(array, 3, axis=3)
    if pad:
        array = np.pad(array, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    code = ALL.index(name)
    out = np.stack([corrupt_image(img, name, severity, np.random.default_rng([seed, code, severity, i]))
                    for i, img in enumerate(array)]) if len(array) else array
    if pad:
        out = out[:, pad:pad + side, pad:pad + side]
    if grey:
        out = np.round(out.astype(np.float64).mean(axis=3, keepdims=True)).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).contiguous()
