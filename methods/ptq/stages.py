"""The reconstruction plans of AdaRound, BRECQ and QDrop as ``ReconStage`` lists, built from a method's
hyper-parameters. Shared by the method files (TTAQ-recon builds on BRECQ's or QDrop's plan)."""
from __future__ import annotations

from typing import Any

from methods.ptq.reconstruct import ReconStage


def _rounding(h: dict[str, Any]) -> dict[str, Any]:
    keys = ("iters", "batch_size", "lr", "round_weight", "warmup", "beta_start", "beta_end")
    return {key: h[key] for key in keys}


def adaround_stages(h: dict[str, Any]) -> list[ReconStage]:
    """Layer by layer, weights only (activations unquantized while the rounding is learned)."""
    return [ReconStage(unit="layer", learn_rounding=True, learn_act=False, act_on=False, **_rounding(h))]


def brecq_stages(h: dict[str, Any]) -> list[ReconStage]:
    """Block by block: the rounding with activations unquantized, then the activation steps with the
    rounding fixed (two passes, as BRECQ's main script)."""
    stages = [ReconStage(unit="block", learn_rounding=True, learn_act=False, act_on=False, loss=h["loss"],
                         **_rounding(h))]
    if h["iters_act"] > 0:
        stages.append(ReconStage(unit="block", iters=h["iters_act"], learn_rounding=False, learn_act=True,
                                 act_on=True, batch_size=h["batch_size"], lr_act=h["lr_act"], loss=h["loss"]))
    return stages


def qdrop_stages(h: dict[str, Any]) -> list[ReconStage]:
    """Block by block, rounding and activation steps jointly, activation quantization dropped with
    probability 1 − drop_prob per element."""
    return [ReconStage(unit="block", learn_rounding=True, learn_act=True, act_on=True, lr_act=h["lr_act"],
                       drop_prob=h["drop_prob"], loss=h["loss"], **_rounding(h))]
