"""``fp``: the full-precision reference. prepare() keeps every layer as it is."""
from __future__ import annotations

from methods.base import LayerPolicy, QuantMethod
from methods.registry import register


@register("fp")
class FullPrecision(QuantMethod):
    quantizes = False
    default_layer_policy = LayerPolicy("fp", "fp")
