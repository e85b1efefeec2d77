"""``brecq``: BRECQ (Li et al., ICLR 2021), block-wise reconstruction with an MSE or diagonal-Fisher loss;
see docs/methods/brecq.md."""
from __future__ import annotations

from methods.ptq.base import COMMON_DEFAULTS, ROUNDING_DEFAULTS, PtqMethod
from methods.ptq.reconstruct import ReconStage
from methods.ptq.stages import brecq_stages
from methods.registry import register


@register("brecq")
class Brecq(PtqMethod):
    learns_rounding = True
    # BRECQ main_imagenet.py: --iters_a 5000, --lr 4e-4 for the activation steps; its main script uses 'mse'.
    defaults = {**COMMON_DEFAULTS, **ROUNDING_DEFAULTS, "loss": "mse", "iters_act": 5000, "lr_act": 4e-4}

    def stages(self) -> list[ReconStage]:
        return brecq_stages(self.hparams)
