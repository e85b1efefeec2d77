"""AdaRound's pieces against the paper's equations written out by hand (NumPy); its rounding ending hard."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.ptq.quantizers import HARD, PtqWeightQuantizer
from methods.ptq.rounding import BetaSchedule, init_alpha, rectified_sigmoid, rounding_regularizer
from methods.ptq.units import weight_quantizers
from tests.ptq.support import prepared, quiet


def _h_by_hand(v: np.ndarray) -> np.ndarray:
    # Nagel et al. 2020, eq. (23): h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1
    return np.clip(1.0 / (1.0 + np.exp(-v)) * 1.2 - 0.1, 0.0, 1.0)


def test_rectified_sigmoid_and_regularizer_match_the_paper():
    v = torch.linspace(-8, 8, 101, dtype=torch.float64)
    expected_h = _h_by_hand(v.numpy())
    assert np.allclose(rectified_sigmoid(v).numpy(), expected_h, atol=1e-12)
    assert rectified_sigmoid(torch.tensor([-20.0, 20.0])).tolist() == [0.0, 1.0]  # reaches both ends exactly
    for beta in (20.0, 7.5, 2.0):
        # eq. (24): f_reg(V) = Σ 1 − |2h(V) − 1|^β
        by_hand = np.sum(1.0 - np.abs(2.0 * expected_h - 1.0) ** beta)
        assert rounding_regularizer(v, beta).item() == pytest.approx(by_hand, rel=1e-12)


def test_alpha_initialisation_inverts_h():
    fraction = torch.rand(1000, dtype=torch.float64) * 0.98 + 0.01
    assert torch.allclose(rectified_sigmoid(init_alpha(fraction)), fraction, atol=1e-12)


def test_beta_schedule_warms_up_then_anneals_20_to_2():
    beta = BetaSchedule(iters=1000)
    assert beta.regularizer_from == 200
    assert beta(0) == beta(199) == 20.0
    assert beta(600) == pytest.approx(11.0)
    assert beta(1000) == pytest.approx(2.0)


def test_rounding_ends_hard_every_weight_floor_or_floor_plus_one():
    net, fp, method, calib = prepared("adaround", 3, 32, size=16, iters=60)
    method.reconstruct(net, fp, calib, seed=0, log=quiet)
    layers = [(m.weight, m.weight_quant) for m in net.modules()
              if isinstance(getattr(m, "weight_quant", None), PtqWeightQuantizer)]
    assert layers and all(q.mode == HARD for _, q in layers)
    moved = 0
    for weight, q in layers:
        top = 2**q.bits - 1
        levels = q(weight) / q.step + q.zero_point  # the integer grid index of every quantized weight
        assert torch.allclose(levels, levels.round(), atol=1e-4)
        levels = levels.round()
        floor = torch.clamp(torch.floor(weight / q.step) + q.zero_point, 0, top)
        ceil = torch.clamp(torch.floor(weight / q.step) + 1 + q.zero_point, 0, top)
        assert bool(((levels == floor) | (levels == ceil)).all()), "a weight left its floor/floor+1 pair"
        nearest = torch.clamp(torch.round(weight / q.step) + q.zero_point, 0, top)
        moved += int((levels != nearest).sum())
    assert moved > 0  # learning changed some decisions away from round-to-nearest


def test_hardened_rounding_survives_a_state_dict_round_trip():
    net, fp, method, calib = prepared("adaround", 2, 4, size=16, iters=20)
    method.reconstruct(net, fp, calib, seed=0, log=quiet)
    fresh, _, _, _ = prepared("adaround", 2, 4, seed=1, size=16, iters=20)
    fresh.load_state_dict(net.state_dict())
    assert all(q.mode == HARD for q in weight_quantizers(fresh))
    with torch.no_grad():
        assert torch.equal(net(calib), fresh(calib))
