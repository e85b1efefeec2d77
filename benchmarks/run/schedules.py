"""Learning-rate schedules (per step) and the DANN gradient-reversal coefficient."""
from __future__ import annotations

import math

from benchmarks.run.spec import Recipe


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at global ``step`` (warm-up, then the recipe's schedule)."""
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    epoch = step / steps_per_epoch
    if recipe.schedule == "multistep":
        return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
    if recipe.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if recipe.schedule == "dann":  # Ganin & Lempitsky: lr_p = lr / (1 + 10 p)^0.75
        return (1.0 + 10.0 * step / max(1, total)) ** -0.75
    return 1.0


def grl_coefficient(step: int, total_steps: int) -> float:
    """λ_p = 2 / (1 + exp(−10 p)) − 1, p = training progress in [0, 1] (DANN, spec 3.3)."""
    p = step / max(1, total_steps)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
