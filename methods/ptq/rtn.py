"""``rtn``: round-to-nearest post-training quantization, the floor every reconstruction method must beat.

Weights: per-channel asymmetric grid from a min-max or an L2-search (``mse``) observer, rounded to nearest.
Activations: per-tensor step from the observer on the calibration images. No optimisation.
"""
from __future__ import annotations

from methods.ptq.base import PtqMethod
from methods.registry import register


@register("rtn")
class RoundToNearest(PtqMethod):
    pass
