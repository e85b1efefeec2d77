"""Quantized drop-in modules. They share the Parameters of the modules they replace, so state-dict keys stay
those of the original model plus the quantizers' own entries (``weight_quant.*``, ``input_quant.*``,
``act_quant.*``)."""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import ActQuantizer, WeightQuantizer


class QuantConv2d(nn.Conv2d):
    """Conv2d whose weight (and, for input-site methods, input) passes through fake quantizers."""

    weight_quant: WeightQuantizer
    input_quant: ActQuantizer | None

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_quant: WeightQuantizer,
                   input_quant: ActQuantizer | None) -> "QuantConv2d":
        # A Conv2d's size attributes are 2-tuples at run time; the stubs type them as tuple[int, ...].
        pair = tuple[int, int]
        q = cls(conv.in_channels, conv.out_channels, cast(pair, conv.kernel_size), cast(pair, conv.stride),
                cast("str | tuple[int, int]", conv.padding), cast(pair, conv.dilation), conv.groups,
                conv.bias is not None, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        q.weight, q.bias = conv.weight, conv.bias
        q.weight_quant, q.input_quant = weight_quant, input_quant
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quant is not None:
            x = self.input_quant(x)
        return self._conv_forward(x, self.weight_quant(self.weight), self.bias)


class QuantLinear(nn.Linear):
    """Linear whose weight (and, for input-site methods, input) passes through fake quantizers."""

    weight_quant: WeightQuantizer
    input_quant: ActQuantizer | None

    @classmethod
    def from_float(cls, linear: nn.Linear, weight_quant: WeightQuantizer,
                   input_quant: ActQuantizer | None) -> "QuantLinear":
        q = cls(linear.in_features, linear.out_features, linear.bias is not None,
                device=linear.weight.device, dtype=linear.weight.dtype)
        q.weight, q.bias = linear.weight, linear.bias
        q.weight_quant, q.input_quant = weight_quant, input_quant
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quant is not None:
            x = self.input_quant(x)
        return F.linear(x, self.weight_quant(self.weight), self.bias)


class QuantBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d followed by an activation quantizer (the post-BN, pre-ReLU site of AlignQ/ClimbQ/EmaQ)."""

    act_quant: ActQuantizer

    @classmethod
    def from_float(cls, bn: nn.BatchNorm2d, act_quant: ActQuantizer) -> "QuantBatchNorm2d":
        q = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        q.load_state_dict(bn.state_dict())
        q.to(device=bn.running_mean.device if bn.running_mean is not None else None)
        q.act_quant = act_quant
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_quant(super().forward(x))
