"""DoReFa-Net (Zhou et al., 2016): equations D1, D2, D4 of ``docs/methods/dorefa.md``.

* D2 (k > 1): w_q = 2·quantize_k(tanh(w) / (2·max|tanh(w)|) + ½) − 1, max over the layer, gradient flowing
  through the max as in the authors' tensorpack code. ``rescale_by_max=True`` reproduces the PyTorch port
  that AlignQ/ClimbQ's baselines use: max detached and w_q multiplied back by it (w_q ∈ [−m, m]).
* D4: a_q = quantize_k(clip(a, 0, 1)). Where the input can be negative (the network input under an 8-bit
  first-layer policy) the clip would zero half the signal, so signed inputs use the symmetric counterpart
  2·quantize_k((clip(a, −1, 1) + 1)/2) − 1 (our choice, documented in docs/methods/dorefa.md).
* D1: quantize_k(r) = round((2^k − 1)·r)/(2^k − 1) with a straight-through gradient.
"""
from __future__ import annotations

import torch

from methods.base import ActQuantizer, LayerPolicy, QuantMethod, WeightQuantizer
from methods.quant import clamp_quantize_unit, quantize_unit
from methods.registry import register


def dorefa_weight(w: torch.Tensor, bits: int, rescale_by_max: bool) -> torch.Tensor:
    t = torch.tanh(w)
    m = t.abs().max()
    if rescale_by_max:
        m = m.detach()
    q = 2.0 * quantize_unit(t / (2.0 * m) + 0.5, bits) - 1.0
    return q * m if rescale_by_max else q


def dorefa_activation(a: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    if signed:
        return 2.0 * quantize_unit((torch.clamp(a, -1.0, 1.0) + 1.0) / 2.0, bits) - 1.0
    return clamp_quantize_unit(a, 0.0, 1.0, bits)  # == quantize_unit(torch.clamp(a, 0, 1), bits), one node


def dorefa_activation_reference(a: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """D4 as the composite of autograd ops that ``dorefa_activation`` fuses (kept for the equality tests)."""
    if signed:
        return 2.0 * quantize_unit((torch.clamp(a, -1.0, 1.0) + 1.0) / 2.0, bits) - 1.0
    return quantize_unit(torch.clamp(a, 0.0, 1.0), bits)


class DorefaWeightQuantizer(WeightQuantizer):
    def __init__(self, bits: int, rescale_by_max: bool) -> None:
        super().__init__(bits)
        self.rescale_by_max = rescale_by_max

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(w, self.bits, self.rescale_by_max)


class DorefaActQuantizer(ActQuantizer):
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return dorefa_activation(x, self.bits, bool(self.signed))


@register("dorefa")
class DoReFa(QuantMethod):
    act_site = "input"
    default_layer_policy = LayerPolicy("8bit", "8bit")
    defaults = {"rescale_by_max": False}
    search_space = {"rescale_by_max": ("categorical", [False, True])}

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return DorefaWeightQuantizer(bits, bool(self.hparams["rescale_by_max"]))

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        return DorefaActQuantizer(bits, signed)
