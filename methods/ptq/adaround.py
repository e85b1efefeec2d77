"""``adaround``: AdaRound (Nagel et al., ICML 2020), layer-wise learned rounding; see
docs/methods/adaround.md."""
from __future__ import annotations

from methods.ptq.base import COMMON_DEFAULTS, ROUNDING_DEFAULTS, PtqMethod
from methods.ptq.reconstruct import ReconStage
from methods.ptq.stages import adaround_stages
from methods.registry import register


@register("adaround")
class AdaRound(PtqMethod):
    learns_rounding = True
    defaults = {**COMMON_DEFAULTS, **ROUNDING_DEFAULTS}

    def stages(self) -> list[ReconStage]:
        return adaround_stages(self.hparams)
