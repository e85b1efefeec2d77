"""DoReFa against D1, D2, D4 (``docs/methods/dorefa.md``)."""
from __future__ import annotations

import torch

from methods.dorefa import dorefa_activation, dorefa_weight
from methods.quant import quantize_unit


def test_d1_grid_and_straight_through_gradient():
    r = torch.tensor([0.0, 0.2, 0.5, 0.74, 1.0], requires_grad=True)
    out = quantize_unit(r, 2)  # n = 3: levels 0, 1/3, 2/3, 1
    assert torch.allclose(out, torch.tensor([0.0, 1 / 3, 2 / 3, 2 / 3, 1.0]))
    out.sum().backward()
    assert torch.equal(r.grad, torch.ones(5))


def test_d2_closed_form_and_range():
    w = torch.tensor([-2.0, -0.1, 0.0, 0.3, 1.0])
    t = torch.tanh(w)
    expected = 2 * torch.round((t / (2 * t.abs().max()) + 0.5) * 3) / 3 - 1
    out = dorefa_weight(w, 2, rescale_by_max=False)
    assert torch.allclose(out, expected)
    assert out.min() >= -1 and out.max() <= 1 and torch.unique(out).numel() <= 4


def test_d2_rescale_by_max_option_matches_pytorch_port():
    w = torch.randn(64)
    m = torch.tanh(w).abs().max()
    assert torch.allclose(dorefa_weight(w, 3, rescale_by_max=True), dorefa_weight(w, 3, False) * m)


def test_d2_gradient_flows_through_the_max():
    w = torch.tensor([-2.0, 0.3, 1.0], requires_grad=True)
    dorefa_weight(w, 4, rescale_by_max=False)[1].backward()
    assert w.grad[0] != 0  # w[0] holds max|tanh|, so it receives gradient through the max (tensorpack)


def test_d4_clip_gradient_and_signed_variant():
    a = torch.tensor([-0.5, 0.2, 0.6, 1.5], requires_grad=True)
    out = dorefa_activation(a, 2, signed=False)
    assert torch.allclose(out, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    out.sum().backward()
    assert torch.equal(a.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))
    signed = dorefa_activation(torch.tensor([-2.0, -0.4, 0.4, 2.0]), 2, signed=True)
    assert torch.allclose(signed, torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
