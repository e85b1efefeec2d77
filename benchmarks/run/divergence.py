"""Divergence detection: a non-finite loss stops the run at once, with the epoch and step it happened at.

On the CPU the loss is checked after every step (reading it costs nothing there). On a GPU, reading a
value synchronises the host with the device, which the training step otherwise avoids; the first non-finite
step is instead recorded on the device and read every ``GPU_CHECK_EVERY`` steps, so a diverged GPU run stops
within that many steps and still names the first bad one. At the end of every epoch the parameters are
checked too (a NaN can enter through an optimizer update with a finite loss).
"""
from __future__ import annotations

import math

import torch
from torch import nn

GPU_CHECK_EVERY = 20


class Diverged(RuntimeError):
    """Training produced a non-finite loss or parameter; the message says where."""


class DivergenceWatch:
    """Watches one epoch's losses (steps are 1-based within the epoch)."""

    def __init__(self, epoch: int, device: torch.device) -> None:
        self.epoch, self.device = epoch, device
        self.on_host = device.type == "cpu"
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.first_value = torch.zeros((), device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        if self.on_host:
            value = float(loss)
            if not math.isfinite(value):
                raise Diverged(f"diverged at epoch {self.epoch} step {step} (loss {value})")
            return
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.first_value = torch.where(bad, loss.detach().float(), self.first_value)
        if step % GPU_CHECK_EVERY == 0:
            self._raise_if_bad()

    def check_epoch_end(self, model: nn.Module) -> None:
        if not self.on_host:
            self._raise_if_bad()
        for name, param in model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise Diverged(f"diverged at epoch {self.epoch}: parameter {name} is not finite")

    def _raise_if_bad(self) -> None:
        step = int(self.first_bad)
        if step >= 0:
            raise Diverged(f"diverged at epoch {self.epoch} step {step} (loss {float(self.first_value)})")
