"""What a unit is reconstructed from: its input in the quantized network, its input and output in the FP
network, over the calibration set (BRECQ's ``save_inp_oup_data`` with ``asym=True``), and the diagonal-Fisher
weights (``save_grad_data``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 128  # images per forward pass while capturing
FISHER_BATCH = 32  # BRECQ computes the gradients batch by batch with its batch size 32 ('batchmean' scale)


class _Stop(Exception):
    """Raised by a capture hook: the rest of the network is not needed."""


@dataclass
class UnitData:
    quant_input: torch.Tensor  # x̃: the unit's input in the (partly) quantized network
    fp_input: torch.Tensor  # x: the unit's input in the FP network (QDrop mixes both)
    fp_output: torch.Tensor  # B(x): the target

    def __len__(self) -> int:
        return int(self.quant_input.shape[0])


def _io(net: nn.Module, unit: nn.Module, x: torch.Tensor, output: bool) -> tuple[torch.Tensor, ...]:
    stored: list[torch.Tensor] = []

    def hook(_module, inputs, out):
        stored.append(inputs[0].detach())
        if output:
            stored.append(out.detach())
        raise _Stop

    handle = unit.register_forward_hook(hook)
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return tuple(stored)


@torch.no_grad()
def capture(qnet: nn.Module, unit: nn.Module, fpnet: nn.Module, fp_unit: nn.Module,
            calib: torch.Tensor) -> UnitData:
    quant_in, fp_in, fp_out = [], [], []
    for chunk in calib.split(CHUNK):
        (q,) = _io(qnet, unit, chunk, output=False)
        x, y = _io(fpnet, fp_unit, chunk, output=True)
        quant_in.append(q)
        fp_in.append(x)
        fp_out.append(y)
    return UnitData(torch.cat(quant_in), torch.cat(fp_in), torch.cat(fp_out))


def fisher_weights(qnet: nn.Module, unit: nn.Module, fpnet: nn.Module, calib: torch.Tensor) -> torch.Tensor:
    """|∂KL(f̂(x) ‖ f(x))/∂z| + 1 at the unit's output z (BRECQ's damping of 1), per calibration image.

    The caller switches on the quantizers of this unit and of the units before it, and off after it."""
    leaf: list[torch.Tensor] = []

    def hook(_module, _inputs, out):
        detached = out.detach().requires_grad_(True)
        leaf.append(detached)
        return detached

    grads = []
    handle = unit.register_forward_hook(hook)
    try:
        for chunk in calib.split(FISHER_BATCH):
            leaf.clear()
            with torch.no_grad():
                target = F.softmax(fpnet(chunk), 1)
            with torch.enable_grad():
                loss = F.kl_div(F.log_softmax(qnet(chunk), 1), target, reduction="batchmean")
                (grad,) = torch.autograd.grad(loss, leaf[0])
            grads.append(grad.abs() + 1.0)
    finally:
        handle.remove()
    return torch.cat(grads)
