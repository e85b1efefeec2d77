"""LSQ, Learned Step Size Quantization (Esser et al., ICLR 2020): equations L1–L6 of ``docs/methods/lsq.md``.

* L1/L2: v̂ = round(clip(v/s, −Q_N, Q_P))·s; weights signed (Q_N = 2^{b−1}, Q_P = 2^{b−1}−1); activations
  unsigned (Q_N = 0, Q_P = 2^b−1) where the input is non-negative, signed where it can be negative (the
  network input, linear bottlenecks) — decided from the first training batch.
* L3/L4 follow from autograd through ``round_ste`` and ``clamp``; L5 scales the step-size gradient by
  g = 1/√(N·Q_P), N = weight count (weights) or features per sample (activations).
* L6: s₀ = 2·mean|v|/√Q_P from the loaded pre-trained weights and from the first real training batch.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from methods.base import ActQuantizer, LayerPolicy, QuantMethod, WeightQuantizer
from methods.lsq_kernel import (  # noqa: F401 (lsq_quantize_reference: tests patch it in here)
    lsq_init_step,
    lsq_quantize,
    lsq_quantize_reference,
    lsq_range,
)
from methods.registry import register


class LsqWeightQuantizer(WeightQuantizer):
    def __init__(self, bits: int) -> None:
        super().__init__(bits)
        self.step = nn.Parameter(torch.tensor(1.0))

    def init_from_weight(self, weight: torch.Tensor) -> None:
        if self.enabled:
            with torch.no_grad():
                self.step.copy_(lsq_init_step(weight, lsq_range(self.bits, True)[1]))

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        q_n, q_p = lsq_range(self.bits, True)
        return lsq_quantize(w, self.step, q_n, q_p, 1.0 / math.sqrt(w.numel() * q_p))


class LsqActQuantizer(ActQuantizer):
    def __init__(self, bits: int, signed: bool | None = None) -> None:
        super().__init__(bits, signed)
        self.step = nn.Parameter(torch.tensor(1.0))

    def init_from_batch(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            self.step.copy_(lsq_init_step(x, lsq_range(self.bits, bool(self.signed))[1]))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q_n, q_p = lsq_range(self.bits, bool(self.signed))
        features = x[0].numel() if x.dim() > 1 else x.numel()
        return lsq_quantize(x, self.step, q_n, q_p, 1.0 / math.sqrt(features * q_p))


@register("lsq")
class LSQ(QuantMethod):
    act_site = "input"
    default_layer_policy = LayerPolicy("8bit", "8bit")  # LSQ paper: first and last layers at 8 bits

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return LsqWeightQuantizer(bits)

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        return LsqActQuantizer(bits, signed)
