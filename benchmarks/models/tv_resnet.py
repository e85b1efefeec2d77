"""torchvision's ResNet-18/50 behind the Backbone contract (Office-31 DANN uses ResNet-50, spec 3.4.1 / 9.3).

The skeleton is ``torchvision.models.resnet.ResNet`` (same layers, names, initialisation, and state-dict keys:
torchvision and ImageNet checkpoints load unchanged). Only the residual blocks are ours, with the same
submodule names and weights but two changes in ``forward``: the shortcut sum is out of place (torchvision's
``out += identity`` overwrites the BN output a quantizer may have saved for backward) and each activation is
its own non-inplace ``nn.ReLU`` (torchvision reuses one inplace ReLU three times, which would also make a
module-swapping quantizer share state between three sites).

``pretrained="imagenet"`` fetches IMAGENET1K_V1 through the torchvision weights API into the torch hub cache;
those weights expect ImageNet-normalised 224-px inputs. ``cifar_stem=True`` (for inputs <= 64 px) swaps the
7x7/2 stem and its max-pool for a 3x3/1 conv, so a 32-px image is not reduced to 1x1 before the last stage.

DomainBed's ResNet for domain generalization (``domainbed/networks.py``, class ``ResNet``) is these options:
``freeze_bn=True`` keeps every BatchNorm in eval mode whatever ``train()`` says (running statistics never
update; the affine weights still train, as in DomainBed, whose ``freeze_bn`` only calls ``eval()``), and
``feature_dropout=p`` applies dropout to the pooled 2048-d features before the linear classifier
(DomainBed's ``resnet_dropout``, default 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from benchmarks.models.base import Backbone
from benchmarks.models.registry import register_arch


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def _conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, bias=False)


class TvBasicBlock(nn.Module):
    """torchvision's BasicBlock (same constructor, same state-dict keys)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer=None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64 or dilation != 1:
            raise ValueError("BasicBlock supports only groups=1, base_width=64, dilation=1")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.relu_out = nn.ReLU()  # after the shortcut: it acts on the sum of both branches
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu_out(out + identity)


class TvBottleneck(nn.Module):
    """torchvision's Bottleneck (V1.5: stride on the 3x3 conv; same constructor, same state-dict keys)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer=None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.relu2 = nn.ReLU()
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.downsample = downsample
        self.relu_out = nn.ReLU()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu_out(out + identity)


class TorchvisionResNet(Backbone):
    def __init__(self, net: nn.Module, in_channels: int = 3, cifar_stem: bool = False,
                 freeze_bn: bool = False, feature_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= feature_dropout < 1.0:
            raise ValueError(f"feature_dropout={feature_dropout} must be in [0, 1)")
        if cifar_stem or in_channels != 3:
            kernel, stride = (3, 1) if cifar_stem else (7, 2)
            net.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding=kernel // 2, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
        if cifar_stem:
            net.maxpool = nn.Identity()
        net.relu = nn.ReLU()  # torchvision's stem ReLU is inplace
        # adopt the children (not `self.net = net`): state-dict keys stay torchvision's, e.g. fc.bias
        for name, child in net.named_children():
            self.add_module(name, child)
        self.feature_dim = self.fc.in_features
        self.freeze_bn = freeze_bn
        # registered only when used, so the default network's modules stay exactly torchvision's
        self.feature_dropout = nn.Dropout(feature_dropout) if feature_dropout > 0 else None
        self.train()  # applies freeze_bn from the start

    def train(self, mode: bool = True) -> "TorchvisionResNet":
        """``nn.Module.train``, then, with ``freeze_bn``, every BatchNorm back in eval mode. Only the BN's own
        flag is cleared, not its children's: a quantizer may hang an activation quantizer under a BN
        (``QuantBatchNorm2d``) and must keep its training behaviour. Every ``model.train()`` of the trainer,
        of a wrapper (DDP) or of ``calibrate`` reaches this method through the module tree."""
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.training = False
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return x if self.feature_dropout is None else self.feature_dropout(x)


def imagenet_state_dict(weights_enum: str) -> Mapping[str, torch.Tensor]:
    """IMAGENET1K_V1 weights via the torchvision weights API (hub cache first, download otherwise)."""
    from benchmarks.data.tv import models as tv_models

    weights = getattr(tv_models, weights_enum).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, timeouts, no DNS: not cached and not downloadable
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
        reason = " ".join(str(err).split())
        raise RuntimeError(
            f"cannot fetch ImageNet weights ({type(err).__name__}: {reason}); offline? "
            f"copy {weights.url} to {target}, or pass pretrained=<path to a state-dict file>"
        ) from None


def _register(name: str, block: type[nn.Module], layers: list[int], weights_enum: str) -> None:
    def build(
        num_classes: int, in_channels: int, input_size: tuple[int, int], *, cifar_stem: bool = False,
        freeze_bn: bool = False, feature_dropout: float = 0.0,
    ) -> TorchvisionResNet:
        # torchvision is imported here, not at module level: importing it costs ~1.5 s per worker
        from benchmarks.data.tv import models as tv_models

        net = tv_models.resnet.ResNet(block, layers, num_classes=num_classes)
        return TorchvisionResNet(net, in_channels, cifar_stem, freeze_bn, feature_dropout)

    build.__name__ = name
    register_arch(name, weight_sets={"imagenet": lambda: imagenet_state_dict(weights_enum)})(build)


_register("resnet18", TvBasicBlock, [2, 2, 2, 2], "ResNet18_Weights")
_register("resnet50", TvBottleneck, [3, 4, 6, 3], "ResNet50_Weights")
