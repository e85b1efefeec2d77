"""EmaQ / EmaQ-LT (INFERRED reconstruction, ``docs/methods/emaq.md``, ``docs/methods/emaq-lt.md``):
per-domain statistics (E1–E2), sensitivity-aware aggregation (E4–E7; γ = 0 = the plain average, bit-exact;
K local steps = FedAvg), logit adjustment (E10–E12)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from methods import BatchContext, DomainBatch, get_method
from methods.admm import AdmmCorrelation
from methods.cdf import ClassSigma
from methods.emaq_core import BN_EPS, DomainCdfActQuantizer, aggregation_weights
from methods.homovar import homovar_class_weights
from methods.quant import cdf_grid, normal_cdf
from tests.methods.test_method_cdf import (
    NUM_CLASSES,
    build,
    make_batch,
    make_context,
    make_loss_fn,
    one_thread,  # noqa: F401  (autouse fixture)
    train,
    two_domain_parts,
)


def labelled_two_domain_parts() -> list[DomainBatch]:
    xs, ys = make_batch([i % NUM_CLASSES for i in range(12)], seed=1)
    xt, yt = make_batch([(i + 1) % NUM_CLASSES for i in range(12)], shift=1.0, seed=2)
    return [DomainBatch(xs, ys, 0), DomainBatch(xt, yt, 1)]


def domain_quantizer(stats: str = "per_domain_ema", domains: int = 3) -> DomainCdfActQuantizer:
    quant = DomainCdfActQuantizer(4, None, stats, 0.9)
    quant.context = BatchContext(num_domains=domains)
    quant.resize(domains, 3)
    quant.initialized.fill_(True)
    return quant


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean((0, 2, 3)), x.var((0, 2, 3), correction=0)


def projected(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    t = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + BN_EPS).sqrt()
    return cdf_grid(normal_cdf(t), 4, 2.0)


def test_per_domain_statistics_are_kept_apart():
    g = torch.Generator().manual_seed(0)
    x0, x0b = (torch.randn(8, 3, 4, 4, generator=g) - 3 for _ in range(2))
    x1 = 2 * torch.randn(8, 3, 4, 4, generator=g) + 5
    quant = domain_quantizer().train()
    for x, domain in ((x0, 0), (x1, 1), (x0b, 0)):
        quant.context.set_batch(None, domain)
        torch.testing.assert_close(quant(x), projected(x, *batch_stats(x)))  # training: the batch's own stats
    (m0, v0), (m0b, v0b), (m1, _) = batch_stats(x0), batch_stats(x0b), batch_stats(x1)
    torch.testing.assert_close(quant.ema_mean[0], 0.9 * m0 + 0.1 * m0b)
    torch.testing.assert_close(quant.ema_var[0], 0.9 * v0 + 0.1 * v0b)
    torch.testing.assert_close(quant.ema_mean[1], m1)
    assert quant.seen.tolist() == [True, True, False]
    quant.eval()
    probe = torch.randn(2, 3, 4, 4, generator=g)
    for domain in (0, 1):
        quant.context.set_batch(None, domain)
        expected = projected(probe, quant.ema_mean[domain], quant.ema_var[domain])
        torch.testing.assert_close(quant(probe), expected)
    pooled = quant.ema_mean[:2].mean(0)
    pooled_var = (quant.ema_var[:2] + quant.ema_mean[:2] ** 2).mean(0) - pooled**2
    for unseen in (None, 2):  # never seen in training: the mixture of the seen domains
        quant.context.set_batch(None, unseen)
        torch.testing.assert_close(quant(probe), projected(probe, pooled, pooled_var))


def test_per_batch_and_shared_bn_modes():
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1)) * 3 + 1
    per_batch = domain_quantizer("per_batch").eval()
    per_batch.context.set_batch(None, 0)
    torch.testing.assert_close(per_batch(x), projected(x, *batch_stats(x)))
    shared = domain_quantizer("shared_bn").train()
    shared.context.set_batch(None, 0)
    torch.testing.assert_close(shared(x), cdf_grid(normal_cdf(x), 4, 2.0))
    assert not per_batch.seen.any() and not shared.seen.any()


def test_native_bn_stat_kernel_tracks_the_same_statistics():
    """``stat_kernel="native_bn"`` (issue #8's opt-in fast path): same projection and EMA statistics as the
    exact kernel up to float rounding; an unknown kernel is a one-line error naming the choices."""
    g = torch.Generator().manual_seed(7)
    xs = [torch.randn(8, 3, 4, 4, generator=g) * 2 - 1 for _ in range(3)]
    outputs = []
    for kernel in ("exact", "native_bn"):
        quant = DomainCdfActQuantizer(4, None, "per_domain_ema", 0.9, stat_kernel=kernel)
        quant.context = BatchContext(num_domains=2)
        quant.resize(2, 3)
        quant.initialized.fill_(True)
        quant.train()
        projections = []
        for i, x in enumerate(xs):
            quant.context.set_batch(None, i % 2)
            projections.append(quant(x))
        outputs.append((torch.stack(projections), quant.ema_mean.clone(), quant.ema_var.clone()))
    exact, native = outputs
    torch.testing.assert_close(native[1], exact[1])
    torch.testing.assert_close(native[2], exact[2])
    # on the 4-bit grid a value within rounding of a level boundary may land on the next level: allow few
    assert (native[0] != exact[0]).float().mean() < 0.01
    with pytest.raises(ValueError, match=r"invalid emaq\.stat_kernel='fused'; valid: exact, native_bn"):
        get_method("emaq", stat_kernel="fused")


def test_aggregation_weights_sum_to_one():
    s = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0))
    for gamma in (-1.0, 0.0, 1.0, 2.0):
        for sens in (s, s[:, 0, 0]):
            w = aggregation_weights(sens, gamma, 1e-12)
            torch.testing.assert_close(w.sum(0), torch.ones_like(w[0]))
    torch.testing.assert_close(aggregation_weights(s, 1.0, 1e-12), s / s.sum(0))


def grads_per_domain(model, method, context, parts):
    """The per-domain gradients of E4, computed independently on a copy."""
    loss_fn = make_loss_fn(model, method, context)
    params = list(model.parameters())
    return params, {p.domain: torch.autograd.grad(loss_fn(p), params, allow_unused=True) for p in parts}


def one_step(model, method, context, parts, lr=0.1):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    method.training_step(model, optimizer, parts, make_loss_fn(model, method, context))
    return list(model.parameters())


@pytest.mark.parametrize("parts_of", [labelled_two_domain_parts, two_domain_parts])
def test_gamma_zero_is_exactly_the_plain_average(parts_of):
    model, method, context = build("emaq", num_domains=2, dann=True, gamma=0.0)
    reference = copy.deepcopy(model).train()
    _, grads = grads_per_domain(reference, method, reference.net.quant_context, parts_of())
    params = one_step(model, method, context, parts_of())
    for p, g0, g1 in zip(params, grads[0], grads[1]):
        expected = g0 if g1 is None else g1 if g0 is None else (g0 + g1) / 2
        assert torch.equal(p.grad, expected)


@pytest.mark.parametrize("granularity", ["layer", "element"])
def test_sensitivity_weighting_by_hand(granularity):
    model, method, context = build("emaq", num_domains=2, sens_granularity=granularity)
    reference = copy.deepcopy(model).train()
    _, grads = grads_per_domain(reference, method, reference.net.quant_context, labelled_two_domain_parts())
    params = one_step(model, method, context, labelled_two_domain_parts())
    for p, g0, g1 in zip(params, grads[0], grads[1]):
        s0, s1 = g0.pow(2), g1.pow(2)  # first observation initialises S (E5)
        if granularity == "layer":
            s0, s1 = s0.mean(), s1.mean()
        w0 = (s0 + 1e-12) / (s0 + s1 + 2e-12)
        torch.testing.assert_close(p.grad, w0 * g0 + (1 - w0) * g1, rtol=1e-5, atol=1e-7)
    assert all(v.shape[0] == 2 for v in method.state_dict()["sensitivity"].values())


def test_local_steps_are_fedavg():
    model, method, context = build("emaq", num_domains=2, gamma=0.0, local_steps=2)
    reference = copy.deepcopy(model).train()
    loss_fn = make_loss_fn(reference, method, reference.net.quant_context)
    params = list(reference.parameters())
    start = [p.detach().clone() for p in params]
    updates = []
    for part in labelled_two_domain_parts():
        first = torch.autograd.grad(loss_fn(part), params)
        with torch.no_grad():
            for p, g in zip(params, first):
                p.sub_(0.1 * g)
        second = torch.autograd.grad(loss_fn(part), params)
        updates.append([a + b for a, b in zip(first, second)])
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
    for p, u0, u1 in zip(one_step(model, method, context, labelled_two_domain_parts()), *updates):
        torch.testing.assert_close(p.grad, (u0 + u1) / 2)


def test_resumed_training_continues_identically():
    model, method, context = build("emaq", num_domains=2, dann=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = make_loss_fn(model, method, context)
    for _ in range(2):
        method.training_step(model.train(), optimizer, two_domain_parts(), loss_fn)
    saved = copy.deepcopy((model.state_dict(), method.state_dict(), optimizer.state_dict()))
    fresh, fresh_method, fresh_context = build("emaq", num_domains=2, dann=True, seed=5)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    fresh.load_state_dict(saved[0])
    fresh_method.load_state_dict(saved[1])
    fresh_optimizer.load_state_dict(saved[2])
    for m, meth, ctx, opt in ((model, method, context, optimizer), (fresh, fresh_method, fresh_context,
                                                                      fresh_optimizer)):
        meth.training_step(m.train(), opt, two_domain_parts(), make_loss_fn(m, meth, ctx))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))


def test_optional_admm_reuses_alignq():
    model, method, context = build("emaq", num_domains=2, dann=True, admm=True)
    observers = [m for m in model.modules() if isinstance(m, AdmmCorrelation)]
    assert len(observers) == 2
    losses = train(model, method, context, two_domain_parts(), steps=2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(m.d_tilde.shape == (16, 16) and not m.pending for m in observers)


def test_unknown_domain_in_training_is_an_error():
    model, method, context = build("emaq", num_domains=1)
    with pytest.raises(ValueError, match="domain id 1"):
        one_step(model, method, context, labelled_two_domain_parts())


# -- EmaQ-LT --------------------------------------------------------------------------------------------
def la_inputs():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0], [1.0, 1.0, 1.0, 1.0]])
    return logits, torch.tensor([0, 3, 2])


@pytest.mark.parametrize("mode", ["conf_train", "plain_la", "conf_posthoc"])
def test_logit_adjustment_by_hand(mode):
    method = get_method("emaq-lt", la_mode=mode, tau0=0.7)
    context = make_context()
    logits, y = la_inputs()
    log_pi = context.class_prior.log()
    conf = torch.softmax(logits, 1).max(1).values[:, None]
    f = torch.randn(3, 8)
    adjusted = {"conf_train": logits + 0.7 * conf * log_pi, "plain_la": logits + 0.7 * log_pi,
                "conf_posthoc": logits}[mode]
    torch.testing.assert_close(method.task_loss(logits, y, f, context), F.cross_entropy(adjusted, y))
    expected_predict = logits - 0.7 * conf * log_pi if mode == "conf_posthoc" else logits
    torch.testing.assert_close(method.predict(logits, context), expected_predict)


def test_logit_adjustment_confidence_has_no_gradient_and_zero_prior_is_floored():
    context = BatchContext(class_prior=torch.tensor([0.7, 0.3, 0.0, 0.0]))
    logits, y = la_inputs()
    logits.requires_grad_()
    method = get_method("emaq-lt")
    method.task_loss(logits, y, torch.randn(3, 8), context).backward()
    conf = torch.softmax(logits.detach(), 1).max(1).values[:, None]
    floored = torch.tensor([0.7, 0.3, 0.3, 0.3]).log()
    shifted = (logits.detach() + conf * floored).requires_grad_()
    F.cross_entropy(shifted, y).backward()
    torch.testing.assert_close(logits.grad, shifted.grad)


@pytest.mark.parametrize("variant", [{}, {"homovar_roots": "sorted", "homovar_zero_features": "keep"}])
def test_homovar_reweighting_flag(variant):
    """ClimbQ's weights, in the authors' code's variant by default (``methods.homovar``), or the other one."""
    method = get_method("emaq-lt", homovar=True, **variant)
    context = make_context()
    logits, y = la_inputs()
    f = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)).relu()
    roots, zero_features = variant.get("homovar_roots", "code"), variant.get("homovar_zero_features", "drop")
    w = homovar_class_weights(f, y, context.class_counts, 0.05, 0.999, roots, zero_features).float()
    conf = torch.softmax(logits, 1).max(1).values[:, None]
    per = F.cross_entropy(logits + conf * context.class_prior.log(), y, reduction="none")
    torch.testing.assert_close(method.task_loss(logits, y, f, context), (w[y] * per).mean())


def test_lt_variance_scaling_option():
    quant = get_method("emaq-lt", ltscale_mode="batch", s0=1.5).act_quantizer(4)
    assert quant.class_sigma == ClassSigma("batch", 1.5)
    assert get_method("emaq").act_quantizer(4).class_sigma is None
    with pytest.raises(ValueError, match="emaq-lt.la_mode"):
        get_method("emaq-lt", la_mode="posthoc")
    with pytest.raises(ValueError, match=r"emaq-lt.homovar_roots='v1'; valid: code, sorted"):
        get_method("emaq-lt", homovar_roots="v1")
    assert get_method("emaq-lt").hparams["homovar_zero_features"] == "drop"
    with pytest.raises(ValueError, match="emaq.local_steps"):
        get_method("emaq", local_steps=0)
    assert {"tau0", "s0", "gamma"} <= set(get_method("emaq-lt").search_space)
