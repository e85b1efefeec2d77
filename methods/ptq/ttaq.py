"""``ttaq``: TTAQ-recon, OUR RECONSTRUCTION of the PTQ side of TTAQ (Xiao et al., arXiv 2412.09899), whose
full text and code are not public: BRECQ- or QDrop-style block reconstruction plus a PEM weight regularizer
and a PCR consistency term, each switchable (weight 0 turns it off) for ablation. See docs/methods/ttaq.md.
"""
from __future__ import annotations

from dataclasses import replace

from methods.ptq.base import COMMON_DEFAULTS, ROUNDING_DEFAULTS, PtqMethod
from methods.ptq.reconstruct import ReconStage
from methods.ptq.stages import brecq_stages, qdrop_stages
from methods.registry import register

BASES = ("qdrop", "brecq")


@register("ttaq")
class TtaqRecon(PtqMethod):
    learns_rounding = True
    defaults = {**COMMON_DEFAULTS, **ROUNDING_DEFAULTS, "base": "qdrop", "loss": "mse", "drop_prob": 0.5,
                "iters_act": 5000, "lr_act": 4e-5, "pem_weight": 1.0, "pcr_weight": 1.0, "snr": 10.0}

    def validate(self) -> None:
        super().validate()
        self._check_choice("base", BASES)

    def stages(self) -> list[ReconStage]:
        plan = qdrop_stages(self.hparams) if self.hparams["base"] == "qdrop" else brecq_stages(self.hparams)
        # PEM and PCR act where the rounding is learned (the weight reconstruction).
        return [replace(stage, pem_weight=self.hparams["pem_weight"], pcr_weight=self.hparams["pcr_weight"],
                        snr=self.hparams["snr"]) if stage.learn_rounding else stage for stage in plan]
