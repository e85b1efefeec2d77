"""LSQ against equations L1–L6 (``docs/methods/lsq.md``) on hand-checked tensors."""
from __future__ import annotations

import math

import pytest
import torch

from methods.lsq import LsqActQuantizer, LsqWeightQuantizer, lsq_range


def test_ranges_l2():
    assert lsq_range(4, signed=True) == (8, 7)
    assert lsq_range(4, signed=False) == (0, 15)
    assert lsq_range(2, signed=True) == (2, 1)


def test_weight_forward_and_gradients_match_l1_l5():
    q = LsqWeightQuantizer(3)  # signed: Q_N = 4, Q_P = 3
    with torch.no_grad():
        q.step.fill_(0.5)
    # v/s = -3.0 (inside), -4.6 (clipped low), 0.7 (inside, rounds to 1), 1.2 (rounds to 1), 2.0,
    # 5.0 (clipped)
    v = torch.tensor([-1.5, -2.3, 0.35, 0.6, 1.0, 2.5], requires_grad=True)
    out = q(v)
    expected = torch.tensor([-3.0, -4.0, 1.0, 1.0, 2.0, 3.0]) * 0.5
    assert torch.allclose(out, expected)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    out.backward(upstream)
    # L3: gradient passes inside (-Q_N, Q_P), zero outside.
    assert torch.equal(v.grad, torch.tensor([1.0, 0.0, 3.0, 4.0, 5.0, 0.0]))
    # L4 per element, then summed with the upstream gradient and scaled by g = 1/sqrt(N * Q_P) (L5).
    r = v.detach() / 0.5
    dstep = torch.tensor([(-r[0] + r[0].round()).item(), -4.0, (-r[2] + r[2].round()).item(),
                          (-r[3] + r[3].round()).item(), (-r[4] + r[4].round()).item(), 3.0])
    g = 1.0 / math.sqrt(v.numel() * 3)
    assert q.step.grad.item() == pytest.approx((dstep * upstream).sum().item() * g, rel=1e-6)


def test_activation_unsigned_clip_and_gradient_scale():
    q = LsqActQuantizer(2, signed=False)  # Q_N = 0, Q_P = 3
    q.train()
    x = torch.tensor([[0.1, 0.9, 2.0, 10.0]], requires_grad=True)
    q(x)  # first call initialises from this batch (L6)
    s0 = 2 * x.detach().abs().mean() / math.sqrt(3)
    assert q.step.item() == pytest.approx(s0.item(), rel=1e-6)
    with torch.no_grad():
        q.step.fill_(1.0)
    x.grad = None
    out = q(x)
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    # features per sample N = 4: g = 1/sqrt(4 * 3); L4 terms: -0.1+0, -0.9+1, -2+2, Q_P = 3
    expected = (-0.1 + 0.0 - 0.9 + 1.0 + 0.0 + 3.0) / math.sqrt(12)
    assert q.step.grad.item() == pytest.approx(expected, rel=1e-5)


def test_weight_step_initialised_from_loaded_weights_l6():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3) * 0.05
    q = LsqWeightQuantizer(4)
    q.init_from_weight(w)
    assert q.step.item() == pytest.approx((2 * w.abs().mean() / math.sqrt(7)).item(), rel=1e-6)


def test_signed_input_detected_from_first_real_batch():
    q = LsqActQuantizer(8)
    q.train()
    q(torch.tensor([[-1.0, 0.5, 2.0]]))
    assert q.signed is True and lsq_range(8, q.signed) == (128, 127)
    p = LsqActQuantizer(4)
    p.train()
    p(torch.tensor([[0.0, 0.5, 2.0]]))
    assert p.signed is False


def test_uncalibrated_activation_quantizer_refuses_evaluation_data():
    q = LsqActQuantizer(4).eval()
    with pytest.raises(RuntimeError, match="calibrat"):
        q(torch.ones(2, 3))
