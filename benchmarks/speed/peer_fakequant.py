"""Peer reference for ``bench_speed``: PyTorch's own eager-mode fake-quant QAT (``torch.ao.quantization``).

Used only by the speed benchmark, never as a method: it answers "what does quantization-aware training cost
in the framework's stock tooling, on the same model, batches and step?". The recipe is the one torch.ao
documents for eager QAT:

* fuse Conv2d+BatchNorm2d(+ReLU) where a conv is directly followed (in registration order, same parent) by its
  BN and optionally a ReLU (``fuse_modules_qat``), so each fused block gets one output fake-quant;
* a QConfig with ``k``-bit fake-quantizers: weights per-tensor symmetric in ``[-2^(k-1), 2^(k-1)-1]``,
  activations per-tensor affine in ``[0, 2^k-1]`` — by default the fused observer+fake-quant op
  (``FusedMovingAvgObsFakeQuantize``, torch.ao's default for QAT) or the plain ``FakeQuantize`` +
  ``MovingAverageMinMaxObserver`` pair (``fused=False``);
* ``prepare_qat``: QAT modules with weight fake-quant, and an output fake-quant on every leaf with a qconfig.

No QuantStub/DeQuantStub and no ``FloatFunctional`` for the residual add: the network input and the add stay
in float, which only makes the peer cheaper. The model keeps its ``features``/``classify`` API, so the
benchmark's loss function runs on it unchanged.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _qconfig(bits: int, fused: bool):
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.fake_quantize import FakeQuantize, FusedMovingAvgObsFakeQuantize
    from torch.ao.quantization.observer import MovingAverageMinMaxObserver

    fq = FusedMovingAvgObsFakeQuantize if fused else FakeQuantize
    act = fq.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=2**bits - 1,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
        reduce_range=False,
    )
    weight = fq.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=-(2 ** (bits - 1)),
        quant_max=2 ** (bits - 1) - 1,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_symmetric,
        reduce_range=False,
    )
    return QConfig(activation=act, weight=weight)


def fusion_groups(model: nn.Module) -> list[list[str]]:
    """[conv, bn] or [conv, bn, relu] name groups: consecutive children of one parent in registration
    order."""
    groups: list[list[str]] = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        prefix = f"{parent_name}." if parent_name else ""
        i = 0
        while i < len(children):
            name, child = children[i]
            if (
                type(child) is nn.Conv2d
                and i + 1 < len(children)
                and type(children[i + 1][1]) is nn.BatchNorm2d
            ):
                group = [prefix + name, prefix + children[i + 1][0]]
                if i + 2 < len(children) and type(children[i + 2][1]) is nn.ReLU:
                    group.append(prefix + children[i + 2][0])
                groups.append(group)
                i += len(group)
            else:
                i += 1
    return groups


def prepare_peer(
    net: nn.Module, bits: int = 4, fuse: bool = True, fused_fake_quant: bool = True
) -> nn.Module:
    """Turn a float backbone (in train mode) into torch.ao eager QAT form, in place; returns it."""
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import fuse_modules_qat, prepare_qat

        net.train()
        if fuse:
            groups = fusion_groups(net)
            if groups:
                fuse_modules_qat(net, groups, inplace=True)
        net.qconfig = _qconfig(bits, fused_fake_quant)
        prepare_qat(net, inplace=True)
    return net
