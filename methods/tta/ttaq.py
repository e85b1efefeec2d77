"""TTAQ-recon's test-time side (TTAQ, Xiao et al. 2024, reconstructed: its text and code are not public):
TENT-style entropy minimisation of the *balanced* logits (the adaptive balanced loss, ``abl.py``) on a
quantized model, updating the batch-norm affine parameters and the activation quantizers' step sizes while the
(integer) weights stay frozen. Each component switches off for ablation: ``tau_frequency``/``tau_complexity``
= 0 removes a term of the balanced loss, ``act_steps: false`` keeps the activation step sizes fixed.
"""
from __future__ import annotations

import torch
from torch import nn

from methods.base import ActQuantizer
from methods.tta.abl import BalancedLogits
from methods.tta.base import (
    InputNorm,
    TtaMethod,
    bn_affine_parameters,
    entropy,
    make_adam,
    only_these_train,
    register_tta,
    use_batch_statistics,
)


@register_tta("ttaq")
class TtaqRecon(TtaMethod):
    forward_passes = 3
    defaults = {"lr": 1e-3, "beta": 0.9, "weight_decay": 0.0, "tau_frequency": 1.0, "tau_complexity": 0.5,
                "momentum": 0.9, "act_steps": True}

    def setup(self, model: nn.Module, norm: InputNorm) -> None:
        self.norm = norm
        use_batch_statistics(model)
        params = bn_affine_parameters(model)
        if self.hparams["act_steps"]:
            params += [p for m in model.modules() if isinstance(m, ActQuantizer) and m.enabled
                       for p in m.parameters(recurse=False)]
        only_these_train(model, params)
        self.optimizer = make_adam(params, self.hparams)
        self.balance: BalancedLogits | None = None

    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        if self.balance is None:
            h = self.hparams
            self.balance = BalancedLogits(logits.shape[1], float(h["tau_frequency"]),
                                          float(h["tau_complexity"]), float(h["momentum"]))
        loss = entropy(self.balance.adjust(logits)).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.balance.update(logits.detach())
        return logits.detach()
