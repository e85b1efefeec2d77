"""The contract every architecture keeps, and the pretrained-weight loader that relies on it.

The trainer, the DANN protocol and ClimbQ's feature-based loss never look inside a network: they call
``features`` (penultimate, pooled, flattened), ``classify`` (the head) and ``make_domain_head``. The
quantizer's ``prepare()`` swaps modules by type and reads the *registration order*: each BatchNorm2d is paired
with the Conv2d registered just before it, and the first/last Conv2d/Linear are the stem and the classifier.
Every architecture here therefore registers its modules in data-flow order and uses activation modules
(``nn.ReLU()``, never inplace, never ``out += x``): an in-place op would overwrite a tensor a quantizer saved
for its backward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class Backbone(nn.Module):
    """Base class: ``forward(x) == classify(features(x))``; ``features`` returns (B, feature_dim)."""

    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def make_domain_head(self, num_domains: int = 2) -> nn.Module:
        """A fresh DANN domain discriminator on ``features``; the DANN protocol keeps it outside the quantized
        network. Default: one Linear layer, as AlignQ's Office-31 ResNet-50 code."""
        return nn.Linear(self.feature_dim, num_domains)


def boundary_layers(model: nn.Module) -> tuple[str, str]:
    """Names of the first and last Conv2d/Linear in registration order: ``prepare()``'s first/last layer."""
    names = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer")
    return names[0], names[-1]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``; a checkpoint dict holding it under 'state_dict' or 'model'
    (the two usual conventions) is unwrapped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_pretrained(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy ``state`` into ``model``; return the layers left at their fresh initialisation.

    Only the first and the last layer may differ in shape from ``state``: a new ``num_classes`` replaces the
    classifier, a new ``in_channels`` or ``cifar_stem`` replaces the stem. Any other difference is an error,
    so a checkpoint of another architecture can never load half-way in silence.
    """
    own = model.state_dict()
    replaceable = boundary_layers(model)
    fresh: set[str] = set()
    for key, value in state.items():
        if key in own and value.shape != own[key].shape:
            layer = key.rsplit(".", 1)[0]
            if layer not in replaceable:
                raise ValueError(
                    f"pretrained '{key}' has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}"
                )
            fresh.add(layer)
    kept = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] not in fresh}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in fresh]
    if missing or unexpected:
        raise ValueError(
            f"pretrained state does not fit {type(model).__name__}: missing {_few(missing)}; "
            f"unexpected {_few(unexpected)}"
        )
    if fresh:
        log.info("pretrained weights loaded; kept fresh (shape changed): %s", ", ".join(sorted(fresh)))
    return sorted(fresh)


def _few(keys: list[str], limit: int = 4) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return (", ".join(keys[:limit]) or "none") + more
