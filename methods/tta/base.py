"""The one interface of test-time adaptation: ``setup(model, norm)`` once, then ``adapt(model, x) -> logits``
per batch of the stream, online (the logits are the prediction made *before* this batch's update), never
reset between domains.

The model arrives quantized (fake-quant modules in its forward pass). A method updates only the parameters
it adapts; the weight quantizers stay in the forward pass, so every prediction is made by the quantized
network. Dropout stays off throughout (the papers' CIFAR/ImageNet source models have none active at test
time); batch normalisation layers use the current batch's statistics where the method says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

_TTA: dict[str, type["TtaMethod"]] = {}


@dataclass(frozen=True)
class InputNorm:
    """The per-channel normalisation in front of the model (augmentations work on [0, 1] images)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return x * _column(self.std, x) + _column(self.mean, x)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - _column(self.mean, x)) / _column(self.std, x)


def _column(values: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)


class TtaMethod:
    """Base class: no adaptation. Subclasses set ``defaults`` and override ``setup``/``adapt``."""

    name = "base"
    defaults: dict[str, Any] = {}
    forward_passes = 1  # cost per image in forward-pass units (a backward pass counts as two): cost estimates

    def __init__(self, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"unknown {self.name} hyper-parameter {unknown[0]!r}; valid: {valid}")
        self.hparams = {**self.defaults, **hparams}

    def setup(self, model: nn.Module, norm: InputNorm) -> None:
        """Configure ``model`` for the stream (which layers train, which parameters adapt)."""
        self.norm = norm
        model.eval()

    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def register_tta(name: str) -> Callable[[type[TtaMethod]], type[TtaMethod]]:
    def decorate(cls: type[TtaMethod]) -> type[TtaMethod]:
        if name in _TTA:
            raise ValueError(f"TTA method {name!r} registered twice")
        cls.name = name
        _TTA[name] = cls
        return cls

    return decorate


def available_tta() -> list[str]:
    import methods.tta.builtin  # noqa: F401  (runs the @register_tta decorators, in table order)

    return list(_TTA)


def tta_class(name: str) -> type[TtaMethod]:
    if name not in available_tta():
        raise ValueError(f"unknown TTA method {name!r}; valid: {', '.join(available_tta())}")
    return _TTA[name]


def get_tta(name: str, **hparams: Any) -> TtaMethod:
    return tta_class(name)(**hparams)


# ---------------------------------------------------------------------------------- shared pieces
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, BN_TYPES)]


def use_batch_statistics(model: nn.Module) -> None:
    """Normalise with each test batch's own statistics (TENT's configuration): running estimates dropped."""
    model.eval()
    for bn in batch_norms(model):
        bn.train()
        bn.track_running_stats = False
        bn.running_mean = None
        bn.running_var = None


def bn_affine_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for bn in batch_norms(model) for p in (bn.weight, bn.bias) if p is not None]


def only_these_train(model: nn.Module, params: list[nn.Parameter]) -> None:
    """requires_grad on exactly ``params``: nothing else of the model can change."""
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample Shannon entropy of softmax(logits) (TENT's loss, averaged by the caller)."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def make_adam(params: list[nn.Parameter], hparams: dict[str, Any]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=hparams["lr"], betas=(hparams["beta"], 0.999),
                            weight_decay=hparams["weight_decay"])
