"""``PtqMethod``: a quantization method of the *post-training* kind.

It plugs into the one quantizer interface (``prepare`` swaps layers for its quantizers; the layer policy sets
the first and last layer at 8 bits by default, as BRECQ's and QDrop's code), and adds ``reconstruct``: given
the prepared network, a copy of the FP network and a calibration batch drawn from the training split, it
initialises the activation ranges and runs the method's reconstruction stages. The harness runs it through
its PTQ runner (``kind = "ptq"``) instead of the QAT epoch loop.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from methods.base import ActQuantizer, LayerPolicy, QuantMethod, WeightQuantizer
from methods.prepare import calibrate
from methods.ptq.losses import LOSSES
from methods.ptq.observers import OBSERVERS
from methods.ptq.quantizers import PtqActQuantizer, PtqWeightQuantizer
from methods.ptq.reconstruct import ReconStage, run_stage

ACT_CALIB_IMAGES = 256  # calibration images the activation observers see (BRECQ initialises on 64)

# Every PTQ method: calibration size, observers.
COMMON_DEFAULTS: dict[str, Any] = {"calib_size": 1024, "weight_observer": "mse", "act_observer": "mse"}
# AdaRound's learned rounding, with BRECQ/QDrop's published defaults (main_imagenet.py, config.yaml).
ROUNDING_DEFAULTS: dict[str, Any] = {"iters": 20000, "batch_size": 32, "lr": 1e-3, "round_weight": 0.01,
                                     "warmup": 0.2, "beta_start": 20.0, "beta_end": 2.0}

Log = Callable[[str], None]


class PtqMethod(QuantMethod):
    kind = "ptq"
    act_site = "input"
    default_layer_policy = LayerPolicy("8bit", "8bit")  # BRECQ/QDrop: first and last layer at 8 bits
    defaults: ClassVar[dict[str, Any]] = dict(COMMON_DEFAULTS)
    learns_rounding: ClassVar[bool] = False

    def validate(self) -> None:
        self._check_choice("weight_observer", OBSERVERS)
        self._check_choice("act_observer", OBSERVERS)
        if "loss" in self.hparams:
            self._check_choice("loss", LOSSES)
        for key in ("calib_size", "iters", "batch_size", "iters_act"):
            if key in self.hparams:
                self._check_int(key, low=0 if key.startswith("iters") else 1)
        for key in ("lr", "lr_act", "snr"):
            if key in self.hparams:
                self._check_number(key, low=0.0, open_low=True)
        for key in ("round_weight", "beta_start", "beta_end", "pem_weight", "pcr_weight"):
            if key in self.hparams:
                self._check_number(key, low=0.0)
        for key in ("warmup", "drop_prob"):
            if key in self.hparams:
                self._check_number(key, low=0.0, high=1.0)

    def _check_int(self, key: str, low: int) -> None:
        value = self.hparams[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"invalid {self.name}.{key}={value!r}; expected an integer >= {low}")

    def _check_number(self, key: str, low: float, high: float | None = None, open_low: bool = False) -> None:
        value = self.hparams[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
        if not ok:
            bound = f"in [{low:g}, {high:g}]" if high is not None else f"{'>' if open_low else '>='} {low:g}"
            raise ValueError(f"invalid {self.name}.{key}={value!r}; expected a number {bound}")

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return PtqWeightQuantizer(bits, self.hparams["weight_observer"], self.learns_rounding)

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        return PtqActQuantizer(bits, self.hparams["act_observer"], signed)

    def stages(self) -> list[ReconStage]:
        """The reconstruction passes after the observers (none: round-to-nearest)."""
        return []

    def reconstruct(self, qnet: nn.Module, fpnet: nn.Module, calib: torch.Tensor, seed: int,
                    log: Log = print) -> list[dict]:
        """Quantize ``qnet`` (prepared for this method) from ``calib`` (normalised training images);
        ``fpnet`` is the same network in full precision. Returns one summary row per unit and stage."""
        calibrate(qnet, calib[:ACT_CALIB_IMAGES])
        generator = torch.Generator().manual_seed(seed)
        rows: list[dict] = []
        for number, stage in enumerate(self.stages(), start=1):
            log(f"{self.name} stage {number}: {stage.unit}-wise, {stage.iters} iters, "
                f"rounding {'learned' if stage.learn_rounding else 'fixed'}, "
                f"activation steps {'learned' if stage.learn_act else 'fixed'}")
            rows += [{"stage": number, **row} for row in run_stage(qnet, fpnet, calib, stage, generator, log)]
        return rows
