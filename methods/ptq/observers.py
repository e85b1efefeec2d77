"""Range observers of the PTQ methods: min-max, and a clipping search that minimises the L_p quantization
error (the ``mse`` observer of BRECQ/QDrop: 80 candidate ranges, shrunk by 1 % each).

Weights: asymmetric, one (step, zero point) per output channel. Activations: one clipping value per tensor.
"""
from __future__ import annotations

import torch

OBSERVERS = ("minmax", "mse")
SEARCH_STEPS = 80  # candidates max·(1 − 0.01·i), i < 80, as the BRECQ/QDrop code
WEIGHT_P = 2.0  # L2 (QDrop's MSE observer)
ACT_P = 2.4  # BRECQ's ``--p 2.4`` for activations
# The activation search scores its candidates on an evenly strided sample of at most this many elements (the
# full tensor costs 80 passes over every activation of the calibration batch; the range is set by the maximum,
# which is always kept).
ACT_SEARCH_ELEMENTS = 1 << 16


def asymmetric_params(low: torch.Tensor, high: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(step, zero point) of the grid {s·(q − z) : q = 0..2^b − 1} covering [low, high] (0 included)."""
    low, high = low.clamp(max=0.0), high.clamp(min=0.0)
    step = ((high - low) / (2**bits - 1)).clamp_min(1e-8)
    return step, torch.round(-low / step)


def fake_quantize_asymmetric(w: torch.Tensor, step: torch.Tensor, zero: torch.Tensor,
                             bits: int) -> torch.Tensor:
    """Round to nearest on the asymmetric grid (no gradient rule: observers only)."""
    return (torch.clamp(torch.round(w / step) + zero, 0, 2**bits - 1) - zero) * step


def weight_range(w: torch.Tensor, bits: int, observer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel (step, zero point), each shaped (C, 1, …) to broadcast against ``w``."""
    flat = w.detach().flatten(1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    low, high = flat.min(1).values, flat.max(1).values
    if observer == "minmax":
        step, zero = asymmetric_params(low, high, bits)
        return step.view(shape), zero.view(shape)
    best_err = torch.full_like(low, float("inf"))
    best_step, best_zero = asymmetric_params(low, high, bits)
    for i in range(SEARCH_STEPS):
        shrink = 1.0 - 0.01 * i
        step, zero = asymmetric_params(low * shrink, high * shrink, bits)
        q = fake_quantize_asymmetric(flat, step[:, None], zero[:, None], bits)
        err = (q - flat).abs().pow(WEIGHT_P).mean(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_step = torch.where(better, step, best_step)
        best_zero = torch.where(better, zero, best_zero)
    return best_step.view(shape), best_zero.view(shape)


def act_step(x: torch.Tensor, q_n: int, q_p: int, observer: str) -> torch.Tensor:
    """Step of a per-tensor activation quantizer with integer range [−q_n, q_p]."""
    x = x.detach().float()
    top = x.abs().max().clamp_min(1e-8)
    if observer == "minmax":
        return top / q_p
    flat = x.flatten()
    if flat.numel() > ACT_SEARCH_ELEMENTS:
        x = flat[:: flat.numel() // ACT_SEARCH_ELEMENTS]
    best, best_err = top / q_p, float("inf")
    for i in range(SEARCH_STEPS):
        step = top * (1.0 - 0.01 * i) / q_p
        q = torch.clamp(torch.round(x / step), -q_n, q_p) * step
        err = float((q - x).abs().pow(ACT_P).mean())
        if err < best_err:
            best, best_err = step, err
    return best
