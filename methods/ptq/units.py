"""Reconstruction units: the pieces of a prepared network that PTQ reconstructs one after another.

* ``layer`` (AdaRound): every quantized Conv2d/Linear on its own.
* ``block`` (BRECQ, QDrop): every residual block (a module whose class is a ``*Block``, ``Bottleneck`` or
  ``InvertedResidual``: the harness's CIFAR ResNets, MobileNetV2 and torchvision ResNets) that holds a
  quantized layer; a quantized layer outside every block (the stem, the classifier, a plain CNN's layers) is a
  unit of its own, as BRECQ's code does for the first and last layer.

Units come in ``named_modules()`` order, which is the data-flow order for every model of the harness (the
same assumption ``prepare`` makes).
"""
from __future__ import annotations

from torch import nn

from methods.layers import QuantConv2d, QuantLinear
from methods.ptq.quantizers import PtqActQuantizer, PtqWeightQuantizer

GRANULARITIES = ("layer", "block")
BLOCK_CLASS_SUFFIXES = ("Block", "Bottleneck", "InvertedResidual")

Unit = tuple[str, nn.Module]


def is_block(module: nn.Module) -> bool:
    return type(module).__name__.endswith(BLOCK_CLASS_SUFFIXES)


def quantized_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (QuantConv2d, QuantLinear))]


def recon_units(net: nn.Module, granularity: str) -> list[Unit]:
    if granularity not in GRANULARITIES:
        raise ValueError(f"invalid reconstruction unit {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    units: list[Unit] = []
    inside = ""  # name prefix of the block being walked
    for name, module in net.named_modules():
        if inside and name.startswith(inside):
            continue
        if granularity == "block" and is_block(module) and quantized_layers(module):
            units.append((name, module))
            inside = name + "."
        elif isinstance(module, (QuantConv2d, QuantLinear)):
            units.append((name, module))
    return units


def weight_quantizers(module: nn.Module) -> list[PtqWeightQuantizer]:
    return [m for m in module.modules() if isinstance(m, PtqWeightQuantizer) and m.enabled]


def act_quantizers(module: nn.Module) -> list[PtqActQuantizer]:
    return [m for m in module.modules() if isinstance(m, PtqActQuantizer) and m.enabled]


def set_quant_state(module: nn.Module, weights: bool, acts: bool) -> None:
    """Switch the PTQ quantizers inside ``module`` on or off (their state is kept)."""
    for q in weight_quantizers(module):
        q.active = weights
    for a in act_quantizers(module):
        a.active = acts
