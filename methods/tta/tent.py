"""TENT (Wang et al., ICLR 2021): minimise the prediction entropy of each test batch by updating only the
batch-norm affine parameters, with batch statistics; one Adam step per batch (CIFAR: lr 1e-3, beta 0.9)."""
from __future__ import annotations

import torch
from torch import nn

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


@register_tta("tent")
class Tent(TtaMethod):
    forward_passes = 3
    defaults = {"lr": 1e-3, "beta": 0.9, "weight_decay": 0.0, "steps": 1}

    def setup(self, model: nn.Module, norm: InputNorm) -> None:
        self.norm = norm
        use_batch_statistics(model)
        params = bn_affine_parameters(model)
        only_these_train(model, params)
        self.optimizer = make_adam(params, self.hparams)

    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = None
        for _ in range(int(self.hparams["steps"])):
            out = model(x)
            logits = out.detach() if logits is None else logits  # the prediction is made before any update
            loss = self.loss(out)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        assert logits is not None
        return logits

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return entropy(logits).mean()
