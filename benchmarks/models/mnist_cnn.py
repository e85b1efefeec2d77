"""DomainBed's ``MNIST_CNN`` (``domainbed/networks.py``), the network of its RotatedMNIST/ColoredMNIST tables.

Four 3×3 convs (64, 128 stride 2, 128, 128 channels, padding 1), each followed by ReLU and *then* GroupNorm
(8 groups), global average pooling to 128 features and one linear classifier (``nonlinear_classifier=False``).
No BatchNorm, so post-BN activation sites (AlignQ, ClimbQ, EmaQ) find none here: those methods run with
full-precision activations on this network (their layer report says so).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.models.registry import register_arch

GROUPS = 8


class MnistCnn(Backbone):
    def __init__(self, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        widths = ((in_channels, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1))
        layers: list[nn.Module] = []
        for c_in, c_out, stride in widths:  # registered in data-flow order: conv, ReLU, GroupNorm
            layers += [nn.Conv2d(c_in, c_out, 3, stride, padding=1), nn.ReLU(), nn.GroupNorm(GROUPS, c_out)]
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 128
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


@register_arch("mnist_cnn")
def mnist_cnn(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> MnistCnn:
    """in_channels 1 (RotatedMNIST) or 2 (ColoredMNIST); any input size (global pooling)."""
    return MnistCnn(num_classes, in_channels)
