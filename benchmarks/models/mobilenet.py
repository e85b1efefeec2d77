"""MobileNetV2 (Sandler et al. 2018) adapted to 32x32 inputs.

The common CIFAR port (kuangliu/pytorch-cifar, also ClimbQ's mobilenet-v2 code) changes two strides of the
ImageNet net from 2 to 1: the 3x3 stem conv and the first block of the 24-channel stage (the first stride-2
stage). The net then downsamples 8x (32 -> 4) instead of 32x. Everything else follows the paper and
torchvision: inverted residual blocks with ReLU6, an identity residual only when stride is 1 and the width is
unchanged, a 1x1 conv to 1280 channels, global average pooling, one Linear.
ClimbQ's port differs in adding a 1x1 conv + BN (+ ReLU) shortcut to every stride-1 block, width change or
not; we keep the paper's block.
``width`` scales every channel count (rounded to a multiple of 8, as torchvision); the last conv keeps at
least 1280 channels.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.models.registry import register_arch

# (expansion t, channels c, blocks n, first stride s); ImageNet has s=2 in the second row
CIFAR_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded  # never round down by more than 10%


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers = [_conv_bn(in_ch, hidden, 1)] if expansion != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, out_ch, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Cifar(Backbone):
    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        in_ch = _make_divisible(32 * width)
        self.stem = _conv_bn(in_channels, in_ch, 3, stride=1)
        blocks = []
        for expansion, channels, repeats, stride in CIFAR_STAGES:
            out_ch = _make_divisible(channels * width)
            for index in range(repeats):
                blocks.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expansion))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = _make_divisible(1280 * max(1.0, width))
        self.head_conv = _conv_bn(in_ch, self.feature_dim, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        # torchvision's MobileNetV2 initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.blocks(self.stem(x)))
        return torch.flatten(self.avgpool(x), 1)


@register_arch("mobilenetv2_cifar")
def mobilenetv2_cifar(
    num_classes: int, in_channels: int, input_size: tuple[int, int], *, width: float = 1.0
) -> MobileNetV2Cifar:
    # input_size is free: global average pooling makes the net size-agnostic
    return MobileNetV2Cifar(num_classes, in_channels, width)
