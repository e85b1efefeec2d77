"""Architectures by name: ``@register_arch("resnet20")`` on a builder; ``build_model("resnet20", 10)``.

A builder is ``fn(num_classes, in_channels, input_size, *, option=default, ...) -> Backbone``; its
keyword-only parameters are the architecture's options, so a misspelt option fails at once instead of being
ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.models.base import Backbone, load_pretrained, read_state_dict

Builder = Callable[..., Backbone]
WeightSource = Callable[[], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class _Arch:
    builder: Builder
    options: tuple[str, ...]
    weight_sets: Mapping[str, WeightSource] = field(default_factory=dict)


_ARCHS: dict[str, _Arch] = {}


def register_arch(
    name: str, *, weight_sets: Mapping[str, WeightSource] | None = None
) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``. ``weight_sets`` names downloadable weights (e.g. ``"imagenet"``)
    that ``build_model(..., pretrained=<that name>)`` accepts besides a file path."""

    def decorate(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture '{name}' is registered twice")
        params = inspect.signature(builder).parameters.values()
        options = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        _ARCHS[name] = _Arch(builder, options, dict(weight_sets or {}))
        return builder

    return decorate


def available_archs() -> list[str]:
    return sorted(_ARCHS)


def arch_options(name: str) -> dict[str, object]:
    """The options of ``name`` with their defaults (for --help texts and docs)."""
    params = inspect.signature(_lookup(name).builder).parameters
    return {opt: params[opt].default for opt in _lookup(name).options}


def build_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    input_size: tuple[int, int] = (32, 32),
    pretrained: str | Path | None = None,
    **options: object,
) -> Backbone:
    """Build architecture ``name`` for ``num_classes`` classes.

    ``pretrained``: a state-dict file, or a weight-set name the architecture registered (``"imagenet"`` for
    the torchvision ResNets). A classifier (or stem) whose shape differs from the weights keeps its fresh
    initialisation.
    """
    arch = _lookup(name)
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        raise ValueError(
            f"unknown option {', '.join(map(repr, unknown))} for architecture '{name}'; "
            f"valid: {', '.join(arch.options) or 'none'}"
        )
    model = arch.builder(num_classes, in_channels, (int(input_size[0]), int(input_size[1])), **options)
    if pretrained is not None:
        load_pretrained(model, _pretrained_state(name, arch, pretrained))
    return model


def _lookup(name: str) -> _Arch:
    if name not in _ARCHS:
        raise ValueError(f"unknown architecture '{name}'; valid: {', '.join(available_archs())}")
    return _ARCHS[name]


def _pretrained_state(name: str, arch: _Arch, pretrained: str | Path) -> Mapping[str, torch.Tensor]:
    if isinstance(pretrained, str) and pretrained in arch.weight_sets:
        return arch.weight_sets[pretrained]()
    if Path(pretrained).is_file():
        return read_state_dict(pretrained)
    raise ValueError(
        f"pretrained={str(pretrained)!r} for '{name}' is neither a file nor a weight set; "
        f"weight sets: {', '.join(arch.weight_sets) or 'none'}"
    )
