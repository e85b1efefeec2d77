"""The PTQ quantizers: per-channel asymmetric weights with learnable rounding, per-tensor activations with
a learnable step.

Weights (BRECQ/QDrop ``UniformAffineQuantizer`` + ``AdaRoundQuantizer``):
ŵ = s·(clamp(⌊w/s⌉ + z, 0, 2^b − 1) − z) with one step s and zero point z per output channel, set once by
an observer from the loaded FP weights. The rounding is to nearest (``NEAREST``), learned (``SOFT``:
⌊w/s⌋ + h(V), AdaRound), or the hardened decision of learning (``HARD``: ⌊w/s⌋ + 1[V ≥ 0]). V lives in the
quantizer, so a saved state dict holds the learned rounding and a model rebuilt by ``prepare`` and
``load_state_dict`` reproduces it exactly.

Activations: v̂ = s·round(clip(v/s, −Q_N, Q_P)), a signed or unsigned integer range decided from the first
calibration batch (as every ActQuantizer of the harness), s initialised by the observer and learned with the
straight-through estimator (LSQ's gradient, without its gradient scale). During QDrop reconstruction each
element keeps its quantized value with probability ``drop_prob`` and its FP value otherwise.

``active`` switches a quantizer off without changing its state: reconstruction needs the network with
weights quantized and activations not (BRECQ's weight stage), or quantized only up to a unit (Fisher loss).
"""
from __future__ import annotations

import torch
from torch import nn

from methods.base import ActQuantizer, WeightQuantizer
from methods.ptq.observers import act_step, weight_range
from methods.ptq.rounding import init_alpha, rectified_sigmoid
from methods.quant import round_ste

NEAREST, SOFT, HARD = 0, 1, 2


class PtqWeightQuantizer(WeightQuantizer):
    """Per-channel: each output channel has its own 2^b-level grid, so a tensor holds at most 2^b integer
    codes (``codes``) and each channel at most 2^b values."""

    per_channel = True
    step: torch.Tensor
    zero_point: torch.Tensor
    rounding: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, bits: int, observer: str, learns_rounding: bool) -> None:
        super().__init__(bits)
        self.observer, self.learns_rounding = observer, learns_rounding
        self.active = True
        self.register_buffer("step", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))
        self.register_buffer("rounding", torch.tensor(NEAREST, dtype=torch.int8))
        self._mode: int | None = None  # host mirror of ``rounding`` (no device sync per forward)

    def init_from_weight(self, weight: torch.Tensor) -> None:
        if not self.enabled:
            return
        step, zero = weight_range(weight, self.bits, self.observer)
        self.step, self.zero_point = step, zero  # buffers: assignment keeps them registered
        if self.learns_rounding:
            self.register_buffer("alpha", torch.zeros_like(weight))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._mode = None

    @property
    def mode(self) -> int:
        if self._mode is None:
            self._mode = int(self.rounding)
        return self._mode

    def _set_mode(self, mode: int) -> None:
        self.rounding.fill_(mode)
        self._mode = mode

    def begin_learning(self, weight: torch.Tensor) -> nn.Parameter:
        """Start AdaRound from h(V) = frac(w/s); returns V, now a trainable parameter of this quantizer."""
        if not self.learns_rounding:
            raise RuntimeError("this weight quantizer was built without learnable rounding")
        scaled = weight.detach() / self.step
        fraction = (scaled - scaled.floor()).clamp(1e-4, 1 - 1e-4)  # keep V finite
        del self.alpha
        self.alpha = nn.Parameter(init_alpha(fraction))
        self._set_mode(SOFT)
        return self.alpha

    def harden(self) -> None:
        """Fix learned rounding to its decisions (1[V ≥ 0]); V becomes a buffer again. A no-op unless
        learning."""
        if self.mode != SOFT:
            return
        alpha = self.alpha.detach().clone()
        del self.alpha
        self.register_buffer("alpha", alpha)
        self._set_mode(HARD)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.quantize(w) if self.enabled and self.active else w

    def integer_offset(self, w: torch.Tensor) -> torch.Tensor:
        """The rounded value of w/s before the zero point and the clamp."""
        scaled = w / self.step
        if self.mode == NEAREST:
            return round_ste(scaled)
        if self.mode == SOFT:
            return scaled.detach().floor() + rectified_sigmoid(self.alpha)
        return scaled.detach().floor() + (self.alpha >= 0).to(w.dtype)

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """The integer grid index (0..2^b − 1) of every quantized weight."""
        return torch.clamp(self.integer_offset(w) + self.zero_point, 0, 2**self.bits - 1).round()

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        levels = torch.clamp(self.integer_offset(w) + self.zero_point, 0, 2**self.bits - 1)
        return (levels - self.zero_point) * self.step

    def extra_repr(self) -> str:
        names = {NEAREST: "nearest", SOFT: "soft", HARD: "hard"}
        return f"bits={self.bits}, observer={self.observer}, rounding={names[self.mode]}"


class PtqActQuantizer(ActQuantizer):
    def __init__(self, bits: int, observer: str, signed: bool | None = None) -> None:
        super().__init__(bits, signed)
        self.observer = observer
        self.step = nn.Parameter(torch.tensor(1.0))
        self.active = True
        self.drop_prob = 1.0  # QDrop: probability of keeping an element quantized (1: always)

    def range(self) -> tuple[int, int]:
        if self.signed:
            return 2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def init_from_batch(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            self.step.copy_(act_step(x, *self.range(), self.observer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.active else x

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q_n, q_p = self.range()
        quantized = round_ste(torch.clamp(x / self.step, -q_n, q_p)) * self.step
        if self.drop_prob >= 1.0:
            return quantized
        return torch.where(torch.rand_like(x) < self.drop_prob, quantized, x)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, observer={self.observer}"
