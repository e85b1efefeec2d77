"""TTAQ's adaptive balanced loss, as reconstructed (TTAQ-recon; the paper's equations are not public):
logits are adjusted by online estimates of each class's frequency and complexity before the TTA objective.

    z'_c = z_c - tau_f * log(pi_c) + tau_k * log(kappa_c / mean(kappa))

pi_c: EMA (momentum 0.9) of the share of the batch predicted as c; kappa_c: EMA of the mean prediction entropy
of the samples predicted as c. Frequent, easy classes are pushed down, rare, hard ones up (Menon et al.'s
logit adjustment with a complexity margin). Each term switches off on its own (tau = 0).
"""
from __future__ import annotations

import torch

from methods.tta.base import entropy


class BalancedLogits:
    def __init__(self, num_classes: int, tau_frequency: float = 1.0, tau_complexity: float = 0.5,
                 momentum: float = 0.9) -> None:
        self.tau_frequency, self.tau_complexity, self.momentum = tau_frequency, tau_complexity, momentum
        self.frequency = torch.full((num_classes,), 1.0 / num_classes)
        self.complexity = torch.ones(num_classes)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        freq, comp = self.frequency.to(logits.device), self.complexity.to(logits.device)
        margin = -self.tau_frequency * freq.clamp_min(1e-6).log()
        margin = margin + self.tau_complexity * (comp / comp.mean()).clamp_min(1e-6).log()
        return logits + margin

    @torch.no_grad()
    def update(self, logits: torch.Tensor) -> None:
        """Fold one batch's pseudo-labels in (after the batch's loss: the adjustment uses earlier batches)."""
        predicted = logits.argmax(1).cpu()
        k = self.frequency.numel()
        share = torch.bincount(predicted, minlength=k).float() / len(predicted)
        self.frequency = self.momentum * self.frequency + (1 - self.momentum) * share
        ent = entropy(logits.float()).cpu()
        counts = torch.bincount(predicted, minlength=k)
        mean_ent = torch.bincount(predicted, weights=ent, minlength=k) / counts.clamp_min(1)
        blended = self.momentum * self.complexity + (1 - self.momentum) * mean_ent
        self.complexity = torch.where(counts > 0, blended, self.complexity)
