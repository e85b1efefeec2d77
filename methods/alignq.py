"""AlignQ (Chen, Yang, Chen, CVPR 2022): CDF alignment quantization with ADMM correlation preservation.

Equations and conventions: ``docs/methods/alignq.md``. Quantizers: ``methods.cdf`` (C1–C4 of
``docs/methods/cdf.md``; weights α_w = 1,
activations after every BN, α_a = 2, Φ(·; 0, 1)); only Conv2d layers are quantized and the classifier stays
FP (the code's convention). ADMM correlation preservation in the form of the authors' code (D, the per-layer
loss, the A11/A12 updates after each step): ``methods.admm``.
"""
from __future__ import annotations

import torch
from torch import nn

from methods.admm import admm_loss, admm_step, attach_admm, check_admm_options
from methods.base import ActQuantizer, LayerPolicy, QuantMethod, WeightQuantizer
from methods.cdf import GRAD_MODES, CdfActQuantizer, CdfWeightQuantizer
from methods.registry import register


@register("alignq")
class AlignQ(QuantMethod):
    act_site = "post_bn"
    quantized_types = (nn.Conv2d,)
    default_layer_policy = LayerPolicy("same", "fp")
    defaults = {"grad_mode": "code", "admm": True, "admm_layers": "all", "mu": 0.2, "rho": 0.3}
    search_space = {"mu": ("float", 0.0, 0.3, False), "rho": ("float", 0.01, 0.3, False)}

    def validate(self) -> None:
        self._check_choice("grad_mode", GRAD_MODES)
        check_admm_options(self)

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return CdfWeightQuantizer(bits, self.hparams["grad_mode"])

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        return CdfActQuantizer(bits, signed)

    def attach(self, model: nn.Module, context) -> None:
        h = self.hparams
        if h["admm"]:
            attach_admm(model, float(h["mu"]), float(h["rho"]), h["admm_layers"])

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        return admm_loss(model)

    def post_step(self, model: nn.Module) -> None:
        admm_step(model)
