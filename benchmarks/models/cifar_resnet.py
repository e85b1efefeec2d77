"""CIFAR ResNets (He et al. 2016, Sec. 4.2): 3 stages x n basic blocks at 16/32/64 channels, depth = 6n + 2.

Shortcut options when a block changes shape (stride 2 / more channels):
* ``"A"`` parameter-free: subsample by the stride and zero-pad the new channels (the paper's option A, as in
  LDAM-DRW's resnet32 — the CIFAR-LT FP baseline, spec 9.1);
* ``"B"`` a 1x1 conv + BN projection, as in AlignQ's and ClimbQ's ResNet-20/56 code, whose quantizers act on
  that conv and its BN too (spec 3.4.1, 21 activation-quantizer sites in ResNet-20).
Defaults follow the code each depth is compared with: resnet32 -> A, resnet20/resnet56 -> B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.models.registry import register_arch

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with zero channels added on both sides (half before, half after)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_before = (planes - in_planes) // 2
        self.pad_after = planes - in_planes - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
        # registered after the shortcut: it acts on the sum of both branches
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(Backbone):
    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, shortcut: str = "A") -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            layers = []
            for index in range(blocks):
                stride = 2 if stage > 1 and index == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        self.feature_dim = 64
        # Kaiming-normal (fan_in) on conv and linear weights, as the LDAM-DRW / AlignQ CIFAR ResNets
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)


def _builder(depth: int, default_shortcut: str):
    def build(
        num_classes: int, in_channels: int, input_size: tuple[int, int], *, shortcut: str = default_shortcut
    ) -> CifarResNet:
        # input_size is free: global average pooling makes the net size-agnostic
        return CifarResNet(depth, num_classes, in_channels, shortcut)

    build.__name__ = f"resnet{depth}"
    return build


for _depth, _default in ((20, "B"), (32, "A"), (56, "B")):
    register_arch(f"resnet{_depth}")(_builder(_depth, _default))
