"""BN-adapt (Schneider et al. 2020; TENT's "norm" baseline): batch normalisation uses each test batch's own
statistics; no parameter changes."""
from __future__ import annotations

import torch
from torch import nn

from methods.tta.base import InputNorm, TtaMethod, register_tta, use_batch_statistics


@register_tta("bn")
class BatchNormAdapt(TtaMethod):
    defaults: dict = {}

    def setup(self, model: nn.Module, norm: InputNorm) -> None:
        self.norm = norm
        use_batch_statistics(model)

    @torch.no_grad()
    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)
