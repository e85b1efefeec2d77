"""The DANN MNIST network (Ganin & Lempitsky 2015; AlignQ's Digits code, spec 3.4.1 and 9.4).

Features: conv5x5 32 -> BN -> ReLU -> maxpool2 -> conv5x5 48 -> BN -> Dropout2d -> ReLU -> maxpool2 -> flatten
(48*4*4 = 768 at 28x28). Class head: 768-100-100-classes with BN1d; domain head: 768-100-num_domains.
AlignQ quantizes only the two convs; both heads stay FP (its layer policy, not this module, decides that).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.models.registry import register_arch


def _pooled_side(side: int) -> int:
    # conv5 (no padding) -> pool2 -> conv5 -> pool2
    return ((side - 4) // 2 - 4) // 2


class DannDigits(Backbone):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        input_size: tuple[int, int] = (28, 28),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        height, width = (_pooled_side(s) for s in input_size)
        if height < 1 or width < 1:
            raise ValueError(f"dann_digits needs inputs of at least 16x16, got {input_size}")
        # conv bias is dropped: the BN right after it makes a bias redundant
        self.conv1 = nn.Conv2d(in_channels, 32, 5, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 48, 5, bias=False)
        self.bn2 = nn.BatchNorm2d(48)
        self.drop2 = nn.Dropout2d(dropout)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.feature_dim = 48 * height * width
        self.classifier = nn.Sequential(
            nn.Linear(self.feature_dim, 100),
            nn.BatchNorm1d(100),
            nn.ReLU(),
            nn.Linear(100, 100),
            nn.BatchNorm1d(100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.drop2(self.bn2(self.conv2(x)))))
        return torch.flatten(x, 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def make_domain_head(self, num_domains: int = 2) -> nn.Module:
        return nn.Sequential(
            nn.Linear(self.feature_dim, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, num_domains)
        )


@register_arch("dann_digits")
def dann_digits(
    num_classes: int, in_channels: int, input_size: tuple[int, int], *, dropout: float = 0.5
) -> DannDigits:
    """in_channels 1 (grey MNIST) or 3 (MNIST replicated to RGB, MNIST-M, SVHN, SynDigits)."""
    return DannDigits(num_classes, in_channels, input_size, dropout)
