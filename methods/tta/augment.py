"""CoTTA's test-time augmentations for 32x32 inputs (``get_tta_transforms``), on [0, 1] image batches.

As in CoTTA, one augmentation draws one set of random parameters and applies it to the whole batch (the
reference applies torchvision transforms to the batch tensor). Colour jitter (brightness 0.6-1.4, contrast
0.7-1.3, saturation 0.5-1.5, gamma 0.7-1.3), edge padding by half the side, a random affine (±15°, translate
1/16, scale 0.9-1.1, bilinear), a 5x5 Gaussian blur (sigma 0.001-0.5), centre crop, horizontal flip with
p = 0.5, Gaussian noise (std 0.005), clip. CoTTA's hue jitter (±0.06) is left out (see docs/methods/cotta.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def colour_jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = (x * _uniform(0.6, 1.4, g)).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * _uniform(0.7, 1.3, g) + mean).clamp(0, 1)
    x = ((x - _grey(x)) * _uniform(0.5, 1.5, g) + _grey(x)).clamp(0, 1)
    return x.clamp_min(1e-8) ** _uniform(0.7, 1.3, g)


def random_affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Pad by half the side (edge), rotate/translate/scale about the centre (bilinear), crop back."""
    side = x.shape[-1]
    pad = side // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    angle = math.radians(_uniform(-15, 15, g))
    scale = _uniform(0.9, 1.1, g)
    max_shift = side / 16 / (padded.shape[-1] / 2)  # pixels -> normalised coordinates of the padded image
    tx, ty = _uniform(-max_shift, max_shift, g), _uniform(-max_shift, max_shift, g)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(padded.shape), align_corners=False)
    out = F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return gaussian_blur(out, _uniform(0.001, 0.5, g))[..., pad:pad + side, pad:pad + side]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.exp(-(torch.arange(-2, 3, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def cotta_augment(x: torch.Tensor, g: torch.Generator, flip: bool = True,
                  noise_std: float = 0.005) -> torch.Tensor:
    """One random CoTTA augmentation of a [0, 1] batch."""
    x = random_affine(colour_jitter(x.clamp(0, 1), g), g)
    if flip and float(torch.rand((), generator=g)) < 0.5:
        x = x.flip(-1)
    noise = torch.randn(x.shape, generator=g).to(x.device) * noise_std
    return (x + noise).clamp(0, 1)
