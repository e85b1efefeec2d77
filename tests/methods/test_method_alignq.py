"""AlignQ's ADMM correlation preservation (``docs/methods/alignq.md``): D, the per-layer loss, A11/A12,
the lazily sized state and its placement."""
from __future__ import annotations

import pytest
import torch

from methods import DomainBatch, get_method, prepare
from methods.admm import AdmmCorrelation, admm_layer_loss, admm_update, attach_admm, batch_correlation
from methods.cdf import CdfActQuantizer
from tests.methods.test_method_cdf import (
    TinyNet,
    build,
    make_batch,
    make_context,
    make_loss_fn,
    one_thread,  # noqa: F401  (autouse fixture)
    two_domain_parts,
)

MU, RHO = 0.2, 0.3


def test_batch_correlation_matches_a_loop():
    u = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    flat = u.flatten(1)
    cols = [(flat[:, j] - flat[:, j].mean()) / (flat[:, j].std() + 1e-5) for j in range(flat.shape[1])]
    std = torch.stack(cols, 1)
    expected = torch.tensor([[float((std[i] * std[k]).sum()) / flat.shape[1] for k in range(5)]
                             for i in range(5)])
    torch.testing.assert_close(batch_correlation(u), expected)


def test_admm_update_nonzero_branch_by_hand():
    # V = D + Γ/ρ = [[2, 2], [2, 2]], ‖V‖_F = 4 > μ/ρ: D̃ = (1 − 0.2/(0.3·4))·V = 5/6·V; Γ' = Γ + ρ(D − D̃)
    d = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    gamma = torch.tensor([[0.3, 0.0], [0.0, 0.3]])
    d_tilde, new_gamma = admm_update(d, gamma, MU, RHO)
    torch.testing.assert_close(d_tilde, torch.full((2, 2), 5.0 / 3.0))
    torch.testing.assert_close(new_gamma, torch.full((2, 2), 0.1))


def test_admm_update_zero_branch_by_hand():
    # ‖V‖_F = 0.5 ≤ μ/ρ = 2/3: D̃ = 0 and Γ' = Γ + ρ·D
    d = torch.tensor([[0.3, 0.0], [0.0, 0.4]])
    d_tilde, new_gamma = admm_update(d, torch.zeros(2, 2), MU, RHO)
    assert torch.equal(d_tilde, torch.zeros(2, 2))
    torch.testing.assert_close(new_gamma, torch.tensor([[0.09, 0.0], [0.0, 0.12]]))


def test_layer_loss_is_the_code_form():
    d = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    d_tilde = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    gamma = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    gap = [0.5, -1.0, 0.5, 0.0]
    expected = (MU * 0.5 / 4 + RHO / 2 * (sum(g * g for g in gap) / 4) ** 0.5
                + (1.0 * 0.5 + 2.0 * 1.0 + 0.0 + 0.0) / 4)
    torch.testing.assert_close(admm_layer_loss(d, d_tilde, gamma, MU, RHO), torch.tensor(expected))


def test_post_step_updates_the_buffers_with_the_observed_d_and_slices_small_batches():
    module = AdmmCorrelation(MU, RHO, 0)
    module.d_tilde = torch.full((3, 3), 7.0)
    module.gamma = torch.zeros(3, 3)
    d_big = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    module.pending = [d_big, torch.tensor([[3.0]])]   # two parts: the step's D is their entry-wise mean
    gamma = torch.tensor([[0.3, 0.0], [0.0, 0.3]])
    module.gamma[:2, :2] = gamma
    module.step()
    d_mean = torch.tensor([[2.0, 2.0], [2.0, 1.0]])
    d_tilde, new_gamma = admm_update(d_mean, gamma, MU, RHO)
    torch.testing.assert_close(module.d_tilde[:2, :2], d_tilde)
    torch.testing.assert_close(module.gamma[:2, :2], new_gamma)
    assert torch.equal(module.d_tilde[2], torch.full((3,), 7.0))  # outside the slice: untouched
    assert module.pending == []


def test_state_is_lazily_sized_deterministic_and_survives_a_smaller_batch():
    states = []
    for _ in range(2):
        model, method, context = build("alignq", calib=make_batch([0, 1, 2, 3])[0])
        loss_fn = make_loss_fn(model, method, context)
        model.train()
        loss_fn(two_domain_parts()[0])       # batch 16
        loss_fn(two_domain_parts()[1])       # unlabelled part, same size
        x, y = make_batch([0, 1, 2], seed=4)
        loss_fn(DomainBatch(x, y, 0))        # a smaller last batch is sliced
        method.post_step(model.net)
        modules = [m for m in model.modules() if isinstance(m, AdmmCorrelation)]
        assert [m.d_tilde.shape for m in modules] == [torch.Size([16, 16])] * 2
        states.append(torch.cat([m.gamma.flatten() for m in modules]))
    assert torch.equal(states[0], states[1])


def test_admm_layer_selection():
    net = TinyNet()
    prepare(net, get_method("alignq", admm=False), 4, 4, None, make_context())
    assert attach_admm(net, MU, RHO, "block_last") == 1   # body holds both BNs: only the last
    assert isinstance(net.body[4].act_quant.observer, AdmmCorrelation)
    assert net.body[1].act_quant.observer is None
    for layers, expected in (("all", 2), ("block_last", 1)):
        model, _, _ = build("alignq", admm_layers=layers)
        assert sum(isinstance(m, AdmmCorrelation) for m in model.modules()) == expected
    model, method, _ = build("alignq", admm=False)
    assert not any(isinstance(m, AdmmCorrelation) for m in model.modules())
    assert method.extra_loss(model.net) is None


def test_admm_loss_reaches_the_weights_and_is_taken_once():
    model, method, context = build("alignq", grad_mode="paper_sigmoid")
    model.train()
    context.set_batch(None, 0)
    model.net.features(two_domain_parts()[0].x)
    loss = method.extra_loss(model.net)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0
               for m in model.net.body if isinstance(m, torch.nn.Conv2d))
    assert method.extra_loss(model.net) is None


def test_options_and_search_space():
    with pytest.raises(ValueError, match="alignq.grad_mode"):
        get_method("alignq", grad_mode="sigmoid")
    with pytest.raises(ValueError, match="alignq.rho"):
        get_method("alignq", rho=0.0)
    method = get_method("alignq")
    assert method.default_layer_policy.last == "fp" and method.act_site == "post_bn"
    for kind, low, high, _ in method.search_space.values():
        assert kind == "float" and 0.0 <= low < high <= 0.3
    assert isinstance(method.act_quantizer(4), CdfActQuantizer)


def test_admm_placement_on_the_code_architectures():
    """``admm_layers``: every post-BN quantizer of ResNet-20 (21), the bn3 of each ResNet-50 bottleneck
    (16)."""
    from benchmarks.models import build_model
    for arch, layers, size, expected in (("resnet20", "all", 32, 21), ("resnet50", "block_last", 64, 16)):
        net = build_model(arch, 10, in_channels=3, input_size=(size, size))
        prepare(net, get_method("alignq", admm_layers=layers), 4, 4, None, make_context())
        names = [n for n, m in net.named_modules() if isinstance(m, AdmmCorrelation)]
        assert len(names) == expected
        assert layers == "all" or all(".bn3." in n for n in names)
