"""The one reconstruction engine behind AdaRound, BRECQ, QDrop and TTAQ-recon: a ``ReconStage`` says what a
pass over the units learns; ``run_stage`` walks the units in order, each fed with the output of the
already-reconstructed ones (BRECQ's asymmetric reconstruction), and hardens each unit's rounding when done.

Per unit and iteration (batch drawn from the cached calibration data):
    x = x̃ (QDrop: x̃ where rand < p, else the FP input x)
    L = error(B̂(x), B(x)) [+ λ·f_reg(V; β(t)) after the warm-up] [+ λ_pem·PEM] [+ λ_pcr·PCR]
V (rounding) is learned with Adam at ``lr``; activation steps with Adam at ``lr_act``, cosine-decayed to 0.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from methods.layers import QuantConv2d, QuantLinear
from methods.ptq.capture import UnitData, capture, fisher_weights
from methods.ptq.losses import consistency, perturbation_penalty, reconstruction_error
from methods.ptq.quantizers import PtqWeightQuantizer
from methods.ptq.rounding import BetaSchedule, rounding_regularizer
from methods.ptq.units import Unit, act_quantizers, recon_units, set_quant_state

ERROR_SAMPLES = 256  # calibration images on which each unit's error is reported before and after

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReconStage:
    unit: str  # "layer" | "block"
    iters: int
    learn_rounding: bool
    learn_act: bool
    act_on: bool  # activations quantized while inputs are captured and the unit is optimised
    batch_size: int = 32
    lr: float = 1e-3
    lr_act: float = 4e-4
    round_weight: float = 0.01
    warmup: float = 0.2
    beta_start: float = 20.0
    beta_end: float = 2.0
    loss: str = "mse"  # "mse" | "fisher_diag"
    drop_prob: float = 1.0  # QDrop: probability of keeping an activation quantized (1: no dropping)
    pem_weight: float = 0.0  # TTAQ-recon PEM (0: off)
    pcr_weight: float = 0.0  # TTAQ-recon PCR (0: off)
    snr: float = 10.0  # TTAQ-recon: perturbation variance = input variance / snr


def run_stage(qnet: nn.Module, fpnet: nn.Module, calib: torch.Tensor, stage: ReconStage,
              generator: torch.Generator, log: Log) -> list[dict]:
    """Reconstruct every unit of ``qnet`` for one stage; returns one summary row per unit."""
    units = recon_units(qnet, stage.unit)
    fp_modules = dict(fpnet.named_modules())
    qnet.eval()
    fpnet.eval()
    for p in list(qnet.parameters()) + list(fpnet.parameters()):
        p.requires_grad_(False)
    rows = []
    for index, (name, unit) in enumerate(units):
        start = time.time()
        set_quant_state(qnet, True, stage.act_on)
        data = capture(qnet, unit, fpnet, fp_modules[name], calib)
        fisher = None
        if stage.loss == "fisher_diag":
            _quantize_up_to(units, index, stage.act_on)
            fisher = fisher_weights(qnet, unit, fpnet, calib)
            set_quant_state(qnet, True, stage.act_on)
        before = unit_error(unit, data)
        _optimize(unit, data, fisher, stage, final=index == len(units) - 1, generator=generator)
        after = unit_error(unit, data)
        rows.append({"unit": name, "error_before": before, "error_after": after, "iters": stage.iters,
                     "seconds": time.time() - start})
        log(f"  {name}: error {before:.5g} -> {after:.5g} ({stage.iters} iters, {time.time() - start:.1f}s)")
    set_quant_state(qnet, True, True)
    return rows


@torch.no_grad()
def unit_error(unit: nn.Module, data: UnitData) -> float:
    """‖B̂(x̃) − B(x)‖² on the first calibration images, with the unit's current quantizer states."""
    n = min(ERROR_SAMPLES, len(data))
    return float(reconstruction_error(unit(data.quant_input[:n]), data.fp_output[:n]))


def _quantize_up_to(units: list[Unit], index: int, act_on: bool) -> None:
    for position, (_, unit) in enumerate(units):
        set_quant_state(unit, position <= index, act_on and position <= index)


def _layer_pairs(unit: nn.Module) -> list[tuple[QuantConv2d | QuantLinear, PtqWeightQuantizer]]:
    return [(m, m.weight_quant) for m in unit.modules()
            if isinstance(m, (QuantConv2d, QuantLinear)) and isinstance(m.weight_quant, PtqWeightQuantizer)
            and m.weight_quant.enabled]


@torch.no_grad()
def _input_variances(unit: nn.Module, x: torch.Tensor) -> dict[nn.Module, float]:
    """Mean per-element variance of each quantized layer's input (PEM's σ² before the SNR)."""
    variances: dict[nn.Module, float] = {}
    hooks = [layer.register_forward_hook(
        lambda m, inputs, _out: variances.__setitem__(m, float(inputs[0].var(0).mean())))
        for layer, _ in _layer_pairs(unit)]
    try:
        unit(x)
    finally:
        for h in hooks:
            h.remove()
    return variances


def _optimize(unit: nn.Module, data: UnitData, fisher: torch.Tensor | None, stage: ReconStage, final: bool,
              generator: torch.Generator) -> None:
    pairs = _layer_pairs(unit)
    acts = act_quantizers(unit) if stage.act_on else []
    rounding = [q.begin_learning(layer.weight) for layer, q in pairs] if stage.learn_rounding else []
    steps = [a.step for a in acts] if stage.learn_act else []
    if not (rounding or steps):
        return
    for p in steps:
        p.requires_grad_(True)
    for a in acts:
        a.drop_prob = stage.drop_prob
    optimizers: list[torch.optim.Optimizer] = []
    scheduler = None
    if rounding:
        optimizers.append(torch.optim.Adam(rounding, lr=stage.lr))
    if steps:
        act_optimizer = torch.optim.Adam(steps, lr=stage.lr_act)
        optimizers.append(act_optimizer)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(act_optimizer, T_max=stage.iters, eta_min=0.0)
    beta = BetaSchedule(stage.iters, stage.warmup, stage.beta_start, stage.beta_end)
    variances = _input_variances(unit, data.quant_input[:ERROR_SAMPLES]) if stage.pem_weight else {}
    input_sigma = math.sqrt(float(data.quant_input.var(0).mean()) / stage.snr) if stage.pcr_weight else 0.0
    try:
        for t in range(stage.iters):
            index = torch.randint(len(data), (stage.batch_size,), generator=generator)
            index = index.to(data.quant_input.device)
            x = data.quant_input[index]
            if stage.drop_prob < 1.0:
                x = torch.where(torch.rand_like(x) < stage.drop_prob, x, data.fp_input[index])
            out = unit(x)
            weights = fisher[index] if fisher is not None else None
            loss = reconstruction_error(out, data.fp_output[index], weights)
            if rounding and t >= beta.regularizer_from:
                b = beta(t)
                loss = loss + stage.round_weight * sum(rounding_regularizer(v, b) for v in rounding)
            if stage.pem_weight:
                penalty = perturbation_penalty([(q(layer.weight), variances[layer] / stage.snr)
                                                for layer, q in pairs])
                loss = loss + stage.pem_weight * penalty
            if stage.pcr_weight:
                perturbed = unit(x + input_sigma * torch.randn_like(x))
                loss = loss + stage.pcr_weight * consistency(out, perturbed, logits=final)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
    finally:
        for _, q in pairs:
            q.harden()
        for a in acts:
            a.drop_prob = 1.0
        for p in steps:
            p.requires_grad_(False)
