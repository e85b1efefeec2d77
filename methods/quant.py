"""Shared quantization primitives: straight-through rounding, gradient scaling, the normal-CDF grid.

Everything here is element-wise and vectorised; per-channel or per-sample variants broadcast.

Speed (issue #8): ``quantize_unit``, ``clamp_quantize_unit``, ``normal_cdf``, ``cdf_grid`` and
``batch_standardize`` are single autograd nodes whose forward works in place on one fresh buffer and whose
backward is the exact chain rule of the composite they replace (the reference composites are kept as
``*_reference`` and ``tests/methods/test_quant_fused.py`` checks bit-identical outputs and gradients). On a
CPU these activation-sized element-wise passes, not the convolutions, dominate a quantized ResNet-20 step, so
fewer passes and allocations is most of the speed-up.
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


def normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


def round_exact_(x: torch.Tensor) -> torch.Tensor:
    """In place, the forward value of ``round_ste(x)`` bit for bit: (round(x) − x) + x is exact (Sterbenz) and
    equals round(x), except that a rounded zero comes out +0; ``add_(0.0)`` turns −0 into +0 the same way."""
    return x.round_().add_(0.0)


def needs_graph(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing this call. The fused kernels below exist for eager mode (fewer
    passes and buffers, bit-identical to their composites); under compilation the composite is traced
    instead, which the compiler fuses itself and which has no in-place ``out=`` tricks or
    ``once_differentiable`` nodes for it to trip over (``docs/speed.md``, compiled steps)."""
    return torch.compiler.is_compiling()


SQRT1_2 = 1.0 / math.sqrt(2.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)  # erf'(s) = 2/√π·exp(−s²), the constant of autograd's ErfBackward


def normal_cdf_reference(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) of the standard normal as a composite of autograd ops (kept for the equality tests)."""
    return 0.5 * (1.0 + torch.erf(x * SQRT1_2))


class _NormalCdf(torch.autograd.Function):
    """``normal_cdf_reference`` as one node: the forward works in place on one buffer; the backward is
    autograd's chain rule for the composite, op for op: MulBackward (g·0.5), AddBackward (identity),
    ErfBackward (2/√π·exp(−s²)·g with s = x/√2 recomputed; ``pow(2)`` computes s·s on the CPU, as the tests
    check), MulBackward (·1/√2). Saves only x (the composite kept x/√2 and its erf)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * SQRT1_2).erf_().add_(1.0).mul_(0.5)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        s = x * SQRT1_2
        return s.mul_(s).neg_().exp_().mul_(TWO_OVER_SQRT_PI).mul_(grad * 0.5).mul_(SQRT1_2)


def keeps_layout_through_unary_ops(x: torch.Tensor) -> bool:
    """Whether an out-of-place unary op (``erf``) returns x's own strides, as an in-place one does: x dense in
    the standard or channels_last layout, with no size-1 dim (whose stride is ambiguous and which such an op
    normalises: a 1-channel conv weight in channels_last). A convolution picks its kernel by its weight's
    strides, so a fused kernel must give its output the composite's strides."""
    if 1 in x.shape:
        return False
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) of the standard normal; its gradient is φ(x) (bit-identical to ``normal_cdf_reference``)."""
    if compiling() or not keeps_layout_through_unary_ops(x):
        return normal_cdf_reference(x)  # rare and small (see above): the composite itself, strides and all
    if not needs_graph(x):
        return (x * SQRT1_2).erf_().add_(1.0).mul_(0.5)
    return _NormalCdf.apply(x)


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
    if compiling():
        return quantize_unit_reference(u, bits)
    if not needs_graph(u):
        return round_exact_(u * n).div_(n)
    return _QuantizeUnit.apply(u, n, None, None)


def clamp_quantize_unit(u: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """``quantize_unit(torch.clamp(u, lo, hi), bits)`` in one node (DoReFa D4's activation path)."""
    n = float(2**bits - 1)
    if compiling():
        return quantize_unit_reference(torch.clamp(u, lo, hi), bits)
    if not needs_graph(u):
        return round_exact_(u.clamp(lo, hi).mul_(n)).div_(n)
    return _QuantizeUnit.apply(u, n, float(lo), float(hi))


def quantize_unit_reference(u: torch.Tensor, bits: int) -> torch.Tensor:
    """The composite ``quantize_unit`` replaces (kept for the equality tests)."""
    n = float(2**bits - 1)
    return round_ste(u * n) / n


def batch_standardize_reference(x: torch.Tensor,
                                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x − μ)/√(σ² + ε) per channel (dim 1) with the batch's mean and biased variance, as a composite of
    autograd ops (kept for the equality tests); returns (standardised x, μ, σ²)."""
    dims = [0, *range(2, x.dim())]
    mean, var = x.mean(dims), x.var(dims, correction=0)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(shape)) / (var.view(shape) + eps).sqrt(), mean, var


class _BatchStandardize(torch.autograd.Function):
    """``batch_standardize_reference`` as one node: one full-size buffer fewer in the forward, five in the
    backward.

    The backward is autograd's for the composite, op for op, in the order its engine runs them: DivBackward
    (g/b; −g·((a/b)/b) summed to b's shape, with a/b = y), SqrtBackward, VarBackward ((2/N)·g·(x − μ)),
    SubBackward (−g summed to μ's shape), MeanBackward (expand/N); the three gradients of x are summed in the
    engine's order. Negating a sum instead of summing negated values is exact (rounding is symmetric). μ and
    σ² carry no gradient (they only feed the EMA statistics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float):
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, var = x.mean(dims), x.var(dims, correction=0)
        centre, scale = mean.view(shape), (var.view(shape) + eps).sqrt()
        y = (x - centre).div_(scale)
        ctx.save_for_backward(x, y, centre, scale)
        ctx.dims = dims
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor, _grad_mean, _grad_var):
        x, y, centre, scale = ctx.saved_tensors
        dims, n = ctx.dims, x.numel() // x.shape[1]
        grad_centred = grad / scale
        grad_scale = -(torch.mul(grad, y / scale).sum(dims, keepdim=True))
        grad_var = (grad_scale / (scale * 2)) * (2.0 / n)
        grad_x = (x - centre).mul_(grad_var).add_(grad_centred)
        return grad_x.add_(-(grad_centred.sum(dims, keepdim=True)) / n), None


def batch_standardize(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x − μ)/√(σ² + ε) per channel with the batch's statistics; returns (standardised x, μ, σ²), μ and σ²
    without gradient. Bit-identical to ``batch_standardize_reference``, values and gradient."""
    if compiling():
        standardized, mean, var = batch_standardize_reference(x, eps)
        return standardized, mean.detach(), var.detach()
    if not needs_graph(x):
        with torch.no_grad():
            return batch_standardize_reference(x, eps)
    return _BatchStandardize.apply(x, eps)


def batch_standardize_native(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_standardize`` through ``torch.native_batch_norm`` (training mode, no affine, no running stats).

    One fused forward and backward, about 4x faster on the CPU (19.2 -> 4.3 ms fwd+bwd on a 128x16x32x32
    channels_last tensor, ``benchmarks/bench_kernels.py``, 2026-12-01), but *not* bit-identical: BatchNorm's
    kernels sum in another order (standardised values differ by up to ~4e-5), so it is an opt-in fast path
    (EmaQ's ``stat_kernel``). σ² is recovered from the kernel's 1/√(σ² + ε); it only feeds the EMA
    statistics.
    """
    standardized, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)
    with torch.no_grad():
        var = invstd.pow(-2).sub_(eps)
    return standardized, mean.detach(), var


def cdf_grid_reference(u: torch.Tensor, bits: int, alpha: float) -> torch.Tensor:
    """Form C3 as a composite of autograd ops (kept for the equality tests)."""
    return alpha * (2.0 * quantize_unit(u, bits) - 1.0)


def _grid_forward_(x: torch.Tensor, n: float, alpha: float) -> torch.Tensor:
    """In place on x = n·u: round, /n, then α·(2·q − 1), the composite's ops in its order."""
    return round_exact_(x).div_(n).mul_(2.0).sub_(1.0).mul_(alpha)


class _CdfGrid(torch.autograd.Function):
    """``cdf_grid_reference`` as one node. Backward as autograd differentiates the composite: MulBackward
    (·α), SubBackward (identity), MulBackward (·2), then ``_QuantizeUnit``'s (g / n)·n (the STE)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, n: float, alpha: float) -> torch.Tensor:
        ctx.n, ctx.alpha = n, alpha
        return _grid_forward_(u * n, n, alpha)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return (grad * ctx.alpha).mul_(2.0).div_(ctx.n).mul_(ctx.n), None, None


def cdf_grid(u: torch.Tensor, bits: int, alpha: float) -> torch.Tensor:
    """Form C3: map a CDF value u ∈ [0, 1] to α·(2·round(n·u)/n − 1): exactly 2^k levels in [−α, α]."""
    n = float(2**bits - 1)
    if compiling():
        return cdf_grid_reference(u, bits, alpha)
    if not needs_graph(u):
        return _grid_forward_(u * n, n, float(alpha))
    return _CdfGrid.apply(u, n, float(alpha))
