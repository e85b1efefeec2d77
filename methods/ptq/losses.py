"""Losses of block/layer reconstruction.

* ``mse``: ‖B̂(x̃) − B(x)‖², summed over channels and averaged over the rest (BRECQ's ``lp_loss`` with p = 2).
* ``fisher_diag``: the same error weighted element-wise by the squared gradient of the network's loss
  with respect to the unit's output (BRECQ's diagonal Fisher; the gradients: ``capture.fisher_weights``).
* TTAQ-recon PEM: Σ_l σ_l²·‖Ŵ_l‖_F², the expected output error that an input perturbation of variance σ_l²
  adds through the quantized weights (``docs/methods/ttaq.md``).
* TTAQ-recon PCR: consistency of the quantized unit's outputs on clean and perturbed inputs: squared error for
  inner units, KL(softmax(clean) ‖ softmax(perturbed)) for the unit that outputs the logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "fisher_diag")


def reconstruction_error(output: torch.Tensor, target: torch.Tensor,
                         fisher: torch.Tensor | None = None) -> torch.Tensor:
    squared = (output - target).pow(2)
    if fisher is not None:
        squared = squared * fisher.pow(2)
    return squared.sum(1).mean()


def perturbation_penalty(weights_and_variances: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """PEM: Σ σ²·‖Ŵ‖_F² over the unit's quantized layers (Ŵ the current soft-quantized weight)."""
    terms = [w.pow(2).sum() * variance for w, variance in weights_and_variances]
    return torch.stack(terms).sum()


def consistency(clean: torch.Tensor, perturbed: torch.Tensor, logits: bool) -> torch.Tensor:
    """PCR: KL(softmax(clean) ‖ softmax(perturbed)) on logits, else the squared error of the outputs."""
    if logits:
        return F.kl_div(F.log_softmax(perturbed, 1), F.log_softmax(clean, 1), log_target=True,
                        reduction="batchmean")
    return (clean - perturbed).pow(2).sum(1).mean()
