"""Shared quantization primitives: straight-through rounding, gradient scaling, the normal-CDF grid.

Everything here is element-wise and vectorised; per-channel or per-sample variants broadcast.

Speed (issue #8): ``quantize_unit`` and ``clamp_quantize_unit`` are single autograd nodes whose forward works in
place on one fresh buffer and whose backward is the exact chain rule of the composite they replace (the
reference composites are kept as ``*_reference`` and ``tests/test_quant_fused.py`` checks bit-identical outputs
and gradients). On a CPU these activation-sized element-wise passes, not the convolutions, dominate a quantized
ResNet-20 step, so fewer passes and allocations is most of the speed-up.
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


def round_exact_(x: torch.Tensor) -> torch.Tensor:
    """In place, the forward value of ``round_ste(x)`` bit for bit: (round(x) − x) + x is exact (Sterbenz) and
    equals round(x), except that a rounded zero comes out +0; ``add_(0.0)`` turns −0 into +0 the same way."""
    return x.round_().add_(0.0)


def needs_graph(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _QuantizeUnit(torch.autograd.Function):
    """``round_ste(clamp(u, lo, hi) · n) / n`` (clamp skipped when lo is None) as one node.

    Backward, as autograd differentiates the composite: DivBackward (g / n), the STE identity, MulBackward
    (· n), then ClampBackward (gradient where lo ≤ u ≤ hi, +0 elsewhere).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, n: float, lo: float | None, hi: float | None) -> torch.Tensor:
        ctx.n, ctx.clamped = n, lo is not None
        if lo is None:
            x = u * n
        else:
            c = u.clamp(lo, hi)
            ctx.save_for_backward(c != u)  # not lo ≤ u ≤ hi (NaN included): where clamp's backward gives 0
            x = c.mul_(n)
        return round_exact_(x).div_(n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        g = (grad / ctx.n).mul_(ctx.n)
        if ctx.clamped:
            (outside,) = ctx.saved_tensors
            g.masked_fill_(outside, 0.0)
        return g, None, None, None


def quantize_unit(u: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize u ∈ [0, 1] onto the 2^k-level grid {0, 1/n, …, 1}, n = 2^k − 1, with STE (DoReFa D1)."""
    n = float(2**bits - 1)
    if not needs_graph(u):
        return round_exact_(u * n).div_(n)
    return _QuantizeUnit.apply(u, n, None, None)


def clamp_quantize_unit(u: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """``quantize_unit(torch.clamp(u, lo, hi), bits)`` in one node (DoReFa D4's activation path)."""
    n = float(2**bits - 1)
    if not needs_graph(u):
        return round_exact_(u.clamp(lo, hi).mul_(n)).div_(n)
    return _QuantizeUnit.apply(u, n, float(lo), float(hi))


def quantize_unit_reference(u: torch.Tensor, bits: int) -> torch.Tensor:
    """The composite ``quantize_unit`` replaces (kept for the equality tests)."""
    n = float(2**bits - 1)
    return round_ste(u * n) / n


def cdf_grid(u: torch.Tensor, bits: int, alpha: float) -> torch.Tensor:
    """Form C3: map a CDF value u ∈ [0, 1] to α·(2·round(n·u)/n − 1): exactly 2^k levels in [−α, α]."""
    return alpha * (2.0 * quantize_unit(u, bits) - 1.0)
