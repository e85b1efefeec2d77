"""LSQ's quantizer kernel (equations L1, L2, L5 and L6 of ``docs/methods/lsq.md``), shared machinery: LSQ and
QT-DoG (weight-only LSQ with per-channel steps) both quantize with it, and a method file never imports a
sibling method file."""
from __future__ import annotations

import math

import torch

from methods.quant import compiling, grad_scale, needs_graph, round_exact_, round_ste


def lsq_range(bits: int, signed: bool) -> tuple[int, int]:
    """(Q_N, Q_P) of equation L2."""
    if signed:
        return 2 ** (bits - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


class _LsqQuantize(torch.autograd.Function):
    """``round_ste(clamp(v / s, −Q_N, Q_P)) · s`` as one autograd node, bit-identical to the composite.

    Backward is autograd's chain rule for the composite, op for op: MulBackward gives g·s to the rounded value
    and Σ g·r to s; the STE passes g·s on; ClampBackward keeps it where −Q_N ≤ v/s ≤ Q_P (+0 elsewhere);
    DivBackward gives it / s to v and −Σ it·((v/s)/s) to s. Sums use ``sum_to_size`` as autograd's broadcast
    reduction does, so any step shape that broadcasts against v works: one step per tensor, per channel
    ((C, 1, 1, 1) for a conv weight, (1, C, 1, 1) for activations) or per element (v's shape).
    Saves the rounded values and the out-of-range mask (the composite saved v/s and the rounded values).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, s: torch.Tensor, q_n: int, q_p: int) -> torch.Tensor:
        t = v / s
        c = t.clamp(-q_n, q_p)
        outside = c != t  # not (−Q_N ≤ v/s ≤ Q_P), NaN included: where clamp's backward gives 0
        r = round_exact_(c)
        ctx.save_for_backward(v, s, outside, r)
        # t's buffer is free again (one large allocation fewer) where it is laid out as the composite's
        # output. Not always: for a tensor with a size-1 dim (a 1-channel conv weight in channels_last) v / s
        # keeps v's strides while clamp normalises them, and a convolution picks its kernel by the weight's
        # strides.
        return torch.mul(r, s, out=t) if t.stride() == r.stride() else r * s

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        v, s, outside, r = ctx.saved_tensors
        grad_t = (grad * s).masked_fill_(outside, 0.0)
        grad_s = None
        if ctx.needs_input_grad[1]:
            # −Σ grad_t·((v/s)/s) == Σ −grad_t·((v/s)/s) exactly (negation commutes with rounding); each
            # edge's sum is cast to s's dtype before the two are added, as autograd's engine does.
            if s.numel() == 1 < grad_t.numel():
                # One step for the tensor (LSQ's quantizers; unchanged since the results were recorded): one
                # scratch buffer, laid out as grad_t, serves both products (each sum is a new tensor, so the
                # buffer is free for the second).
                scratch = torch.div(v, s, out=torch.empty_like(grad_t)).div_(s)
                grad_s2 = torch.mul(grad_t, scratch, out=scratch).sum_to_size(s.shape).to(s.dtype)
                grad_s = torch.mul(grad, r, out=scratch).sum_to_size(s.shape).to(s.dtype) - grad_s2
            else:
                # A step per channel or per element. A partial sum's order follows its operand's memory
                # layout, so each product is laid out as autograd's own: DivBackward's as ClampBackward's
                # output (v/s's layout, which r has), MulBackward's as g·r. Without a reduction sum_to_size
                # returns the product itself, hence two buffers.
                product = torch.div(v, s, out=torch.empty_like(r)).div_(s).mul_(grad_t)
                grad_s2 = product.sum_to_size(s.shape).to(s.dtype)
                grad_s = (grad * r).sum_to_size(s.shape).to(s.dtype) - grad_s2
        grad_v = grad_t.div_(s)
        return (grad_v if grad_v.shape == v.shape else grad_v.sum_to_size(v.shape)), grad_s, None, None


def lsq_quantize(v: torch.Tensor, step: torch.Tensor, q_n: int, q_p: int, scale: float) -> torch.Tensor:
    """Equation L1 with the L5 gradient scale on the step size."""
    if compiling():  # the composite: the compiler fuses it (the fused node is for eager mode)
        return lsq_quantize_reference(v, step, q_n, q_p, scale)
    s = grad_scale(step, scale)
    if not needs_graph(v, s):  # evaluation: the same values, in place on one buffer
        return round_exact_((v / s).clamp(-q_n, q_p)).mul_(s)  # clamp out of place: the composite's strides
    return _LsqQuantize.apply(v, s, q_n, q_p)


def lsq_quantize_reference(v: torch.Tensor, step: torch.Tensor, q_n: int, q_p: int,
                           scale: float) -> torch.Tensor:
    """The composite of autograd ops that ``lsq_quantize`` fuses (kept for the equality tests)."""
    s = grad_scale(step, scale)
    return round_ste(torch.clamp(v / s, -q_n, q_p)) * s


def lsq_init_step(v: torch.Tensor, q_p: int) -> torch.Tensor:
    """Equation L6; a floor keeps an all-zero tensor from giving a zero step."""
    return (2.0 * v.abs().mean() / math.sqrt(q_p)).clamp_min(1e-8)
