"""ClimbQ (Chen, Yang, Chen, NeurIPS 2022): class-imbalanced quantization, as in the authors' code.

Equations and conventions: ``docs/methods/climbq.md``. Quantizers: ``methods.cdf`` (C1–C3 of
``docs/methods/cdf.md``, α_w = 1,
α_a = 2, post-BN, classifier FP) with a per-sample σ from the sample's class (V1–V4, ``cdf.ClassSigma``):
σ_j = s·(2 − p̃_j) in training, σ = 2·s at test. The task loss is the HomoVar loss (H1–H10,
``methods.homovar``) alone, with no separate cross-entropy term.
"""
from __future__ import annotations

import torch
from torch import nn

from methods.base import ActQuantizer, LayerPolicy, QuantMethod, WeightQuantizer
from methods.cdf import CdfActQuantizer, CdfWeightQuantizer, ClassSigma, check_option, is_number
from methods.context import BatchContext
from methods.homovar import COUNT_MODES, HOMOVAR_DEFAULTS, check_homovar_options, weighted_homovar
from methods.registry import register

SIGMA_MODE_NAMES = {"code_batch": "batch", "prior": "prior"}  # option value -> ClassSigma mode


@register("climbq")
class ClimbQ(QuantMethod):
    act_site = "post_bn"
    quantized_types = (nn.Conv2d,)
    default_layer_policy = LayerPolicy("same", "fp")
    defaults = {"sigma_mode": "code_batch", "sigma_scale": 1.0, "count_mode": "global", "alpha": 0.05,
                "beta0": 0.999, **HOMOVAR_DEFAULTS}
    search_space = {"beta0": ("float", 0.99, 0.9999, False)}

    def validate(self) -> None:
        h = self.hparams
        self._check_choice("sigma_mode", tuple(SIGMA_MODE_NAMES))
        self._check_choice("count_mode", COUNT_MODES)
        check_homovar_options(self)
        check_option(self, "sigma_scale", is_number(h["sigma_scale"]) and h["sigma_scale"] > 0,
                     "a number > 0")
        check_option(self, "alpha", is_number(h["alpha"]) and 0 < h["alpha"] < 1, "a number in (0, 1)")
        check_option(self, "beta0", is_number(h["beta0"]) and 0 < h["beta0"] <= 1, "a number in (0, 1]")

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return CdfWeightQuantizer(bits)

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        sigma = ClassSigma(SIGMA_MODE_NAMES[self.hparams["sigma_mode"]], float(self.hparams["sigma_scale"]))
        return CdfActQuantizer(bits, signed, class_sigma=sigma)

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor,
                  context: BatchContext) -> torch.Tensor:
        h = self.hparams
        return weighted_homovar(logits, targets, features, context, h["count_mode"], h["alpha"], h["beta0"],
                                h["homovar_roots"], h["homovar_zero_features"])
