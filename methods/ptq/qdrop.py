"""``qdrop``: QDrop (Wei et al., ICLR 2022), block-wise reconstruction with activation quantization dropped
at random (p = 0.5) and weights and activation steps learned jointly; see docs/methods/qdrop.md."""
from __future__ import annotations

from methods.ptq.base import COMMON_DEFAULTS, ROUNDING_DEFAULTS, PtqMethod
from methods.ptq.reconstruct import ReconStage
from methods.ptq.stages import qdrop_stages
from methods.registry import register


@register("qdrop")
class QDrop(PtqMethod):
    learns_rounding = True
    # QDrop exp/w2a4/r18/config.yaml: drop_prob 0.5, activation-scale lr 4e-5 (cosine to 0).
    defaults = {**COMMON_DEFAULTS, **ROUNDING_DEFAULTS, "loss": "mse", "drop_prob": 0.5, "lr_act": 4e-5}

    def stages(self) -> list[ReconStage]:
        return qdrop_stages(self.hparams)
