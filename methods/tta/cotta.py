"""CoTTA (Wang et al., CVPR 2022): a mean teacher gives the student its targets; when the source model's
confidence on the batch is below a threshold the teacher's prediction is averaged over 32 augmentations; every
step restores each weight element to its source value with probability p (stochastic restore).

Follows ``qinenergy/cotta : cifar/cotta.py``: student, EMA teacher (alpha 0.999) and a frozen anchor are
copies of the quantized model, all with batch statistics; Adam lr 1e-3 over every parameter; the loss is the
cross-entropy of the student against the teacher's softmax; the prediction returned is the teacher's.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from methods.tta.augment import cotta_augment
from methods.tta.base import InputNorm, TtaMethod, make_adam, register_tta, use_batch_statistics


@register_tta("cotta")
class CoTTA(TtaMethod):
    forward_passes = 38  # student + backward, teacher, anchor, up to 32 augmented teacher passes
    defaults = {"lr": 1e-3, "beta": 0.9, "weight_decay": 0.0, "ema": 0.999, "restore_p": 0.01,
                "confidence": 0.92, "augmentations": 32, "flip": True, "seed": 0}

    def setup(self, model: nn.Module, norm: InputNorm) -> None:
        self.norm = norm
        use_batch_statistics(model)
        model.requires_grad_(True)
        self.source_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.anchor = copy.deepcopy(model).requires_grad_(False)
        self.optimizer = make_adam([p for p in model.parameters() if p.requires_grad], self.hparams)
        self.generator = torch.Generator().manual_seed(int(self.hparams["seed"]))
        # which parameters stochastic restore touches: those named weight/bias, as the reference code
        self.restorable = [(name, p) for name, p in model.named_parameters()
                           if name.rsplit(".", 1)[-1] in ("weight", "bias")]

    def adapt(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        student = model(x)
        with torch.no_grad():
            target = self.teacher_prediction(x)
        loss = -(target.softmax(1) * student.log_softmax(1)).sum(1).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_teacher(model)
        self.restore(model)
        return target

    def teacher_prediction(self, x: torch.Tensor) -> torch.Tensor:
        confidence = self.anchor(x).softmax(1).max(1).values.mean()
        if confidence >= self.hparams["confidence"]:
            return self.teacher(x)
        # The reference always runs the 32 augmented passes and discards them when confident; running them
        # only when they are used gives the same predictions (only the random stream differs).
        unit = self.norm.to_unit(x)
        flip = bool(self.hparams["flip"])
        passes = [self.teacher(self.norm.from_unit(cotta_augment(unit, self.generator, flip)))
                  for _ in range(int(self.hparams["augmentations"]))]
        return torch.stack(passes).mean(0)

    @torch.no_grad()
    def update_teacher(self, model: nn.Module) -> None:
        alpha = float(self.hparams["ema"])
        for teacher_p, student_p in zip(self.teacher.parameters(), model.parameters()):
            teacher_p.mul_(alpha).add_(student_p.detach(), alpha=1 - alpha)

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        p_restore = float(self.hparams["restore_p"])
        for name, p in self.restorable:
            mask = torch.rand(p.shape, generator=self.generator).to(p.device) < p_restore
            p.copy_(torch.where(mask, self.source_state[name], p))
