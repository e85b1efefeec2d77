"""QDrop's dropping, TTAQ-recon's PEM term and BRECQ's Fisher loss, each against a direct computation."""
from __future__ import annotations

import pytest
import torch

from methods.ptq.losses import perturbation_penalty, reconstruction_error
from methods.ptq.quantizers import PtqActQuantizer


def test_qdrop_keeps_each_element_quantized_with_probability_p():
    q = PtqActQuantizer(2, "minmax", signed=False)
    x = torch.rand(200_000) * 3.0
    q.calibrating = True
    q(x)  # initialise the step from this batch
    q.calibrating = False
    quantized = q(x)
    q.drop_prob = 0.5
    torch.manual_seed(0)
    mixed = q(x)
    differs = quantized != x  # where quantizing changes the value, the two sources can be told apart
    kept = (mixed[differs] == quantized[differs]).float().mean().item()
    assert kept == pytest.approx(0.5, abs=0.01)
    assert bool(((mixed == quantized) | (mixed == x)).all())  # each element is one or the other


def test_pem_is_the_expected_extra_error_of_a_perturbed_input():
    """E‖Ŵ(x + δ) − W x‖² = ‖(Ŵ − W) x‖² + σ²‖Ŵ‖_F² for δ ~ N(0, σ²I): PEM is the second term, checked by
    Monte Carlo on a linear layer."""
    torch.manual_seed(0)
    w = torch.randn(6, 10, dtype=torch.float64)
    w_hat = w + 0.1 * torch.randn_like(w)
    x = torch.randn(10, dtype=torch.float64)
    sigma2 = 0.3
    delta = torch.randn(200_000, 10, dtype=torch.float64) * sigma2**0.5
    monte_carlo = ((x + delta) @ w_hat.T - x @ w.T).pow(2).sum(1).mean().item()
    clean = (x @ (w_hat - w).T).pow(2).sum().item()
    assert clean + perturbation_penalty([(w_hat, sigma2)]).item() == pytest.approx(monte_carlo, rel=0.01)


def test_fisher_loss_weights_each_element_by_the_squared_gradient():
    out, target = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    grad = torch.rand(4, 3, 2, 2) + 1.0
    by_hand = sum(((out[b] - target[b]) ** 2 * grad[b] ** 2).sum(0).mean() for b in range(4)) / 4
    assert reconstruction_error(out, target, grad).item() == pytest.approx(float(by_hand), rel=1e-6)
    assert reconstruction_error(out, target).item() == pytest.approx(
        float(((out - target) ** 2).sum(1).mean()), rel=1e-6)
