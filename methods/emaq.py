"""EmaQ (Yeh, Chen, Yang, Chen, arXiv 2606.04920): multi-domain alignment quantization, INFERRED.

Only the abstract is public; ``docs/methods/emaq.md`` states our reconstruction: a CDF projection with
per-domain statistics (E1–E3) and sensitivity-aware aggregation of per-domain gradients (E4–E7), with AlignQ's
ADMM as an option. The machinery lives in ``methods.emaq_core`` (EmaQ-LT extends it); this file registers it.
"""
from __future__ import annotations

from methods.emaq_core import EmaQBase
from methods.registry import register


@register("emaq")
class EmaQ(EmaQBase):
    """EmaQ: ``EmaQBase`` as is, under the name ``emaq``."""
