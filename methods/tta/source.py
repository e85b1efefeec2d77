"""Source: the quantized model as it is, no adaptation (the lower reference of every TTA table)."""
from __future__ import annotations

import torch
from torch import nn

from methods.tta.base import TtaMethod, register_tta


@register_tta("source")
class Source(TtaMethod):
    defaults: dict = {}

    @torch.no_grad()
    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)
