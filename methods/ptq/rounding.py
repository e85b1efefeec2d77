"""AdaRound's rounding variable and its regularizer (Nagel et al., ICML 2020), as the PTQ codes implement
them.

* Rectified sigmoid: h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1. It reaches exactly 0 and 1, so
  the regularizer can push every weight to a hard decision.
* Rounding regularizer: f_reg(V) = Σ 1 − |2h(V) − 1|^β, with β annealed from 20 to 2 after a warm-up of 20 %
  of the iterations during which the regularizer is off (BRECQ/QDrop ``LinearTempDecay``).
* Initialisation: V such that h(V) equals the fractional part of w/s, so the soft weight starts at the FP one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ZETA = 1.1
GAMMA = -0.1


def rectified_sigmoid(alpha: torch.Tensor) -> torch.Tensor:
    """h(V) of the AdaRound paper, in [0, 1]."""
    return torch.clamp(torch.sigmoid(alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def init_alpha(fraction: torch.Tensor) -> torch.Tensor:
    """The V with h(V) = ``fraction`` (the inverse of the rectified sigmoid on (0, 1))."""
    return -torch.log((ZETA - GAMMA) / (fraction - GAMMA) - 1.0)


def rounding_regularizer(alpha: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ 1 − |2h(V) − 1|^β: zero only when every h is 0 or 1."""
    return (1.0 - (2.0 * rectified_sigmoid(alpha) - 1.0).abs().pow(beta)).sum()


@dataclass(frozen=True)
class BetaSchedule:
    """β(t): ``start`` until ``warmup``·iters, then linear to ``end`` at the last iteration."""

    iters: int
    warmup: float = 0.2
    start: float = 20.0
    end: float = 2.0

    @property
    def regularizer_from(self) -> int:
        """The first iteration that adds the rounding regularizer (none during the warm-up)."""
        return math.ceil(self.warmup * self.iters)

    def __call__(self, t: int) -> float:
        decay_from = self.warmup * self.iters
        if t < decay_from:
            return self.start
        progress = (t - decay_from) / max(self.iters - decay_from, 1e-12)
        return self.end + (self.start - self.end) * max(0.0, 1.0 - progress)
