"""Shared quantization primitives: straight-through rounding, gradient scaling, the normal-CDF grid.

Everything here is element-wise and vectorised; per-channel or per-sample variants broadcast.
"""
from __future__ import annotations

import math

import torch

FULL_PRECISION_BITS = 32
VALID_BITS = tuple(range(2, 17)) + (FULL_PRECISION_BITS,)


def check_bits(bits: int, what: str = "bits") -> int:
    """Return ``bits`` as int or raise a one-line ValueError naming the valid range."""
    if isinstance(bits, bool) or not isinstance(bits, (int,)) or bits not in VALID_BITS:
        raise ValueError(f"invalid {what} {bits!r}; valid: 2..16 or 32 (full precision)")
    return int(bits)


def is_full_precision(bits: int) -> bool:
    return bits >= FULL_PRECISION_BITS


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() in the forward pass, identity gradient in the backward pass (straight-through)."""
    return (x.round() - x).detach() + x


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``scale`` (LSQ eq. L5)."""
    scaled = x * scale
    return (x - scaled).detach() + scaled


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) of the standard normal; autograd gives φ(x) as its derivative."""
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


def quantize_unit(u: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize u ∈ [0, 1] onto the 2^k-level grid {0, 1/n, …, 1}, n = 2^k − 1, with STE (DoReFa D1)."""
    n = float(2**bits - 1)
    return round_ste(u * n) / n


def cdf_grid(u: torch.Tensor, bits: int, alpha: float) -> torch.Tensor:
    """Form C3: map a CDF value u ∈ [0, 1] to α·(2·round(n·u)/n − 1): exactly 2^k levels in [−α, α]."""
    return alpha * (2.0 * quantize_unit(u, bits) - 1.0)
