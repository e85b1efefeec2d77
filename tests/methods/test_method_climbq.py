"""ClimbQ: the class-conditioned σ (V1–V4) and the HomoVar loss (H1–H10) against hand computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import f as f_dist

from methods import BatchContext, get_method
from methods.cdf import CdfActQuantizer, ClassSigma
from methods.homovar import homovar_class_weights, homovar_loss
from methods.quant import cdf_grid, normal_cdf
from tests.methods.test_method_cdf import (
    build,
    make_batch,
    make_context,
    one_thread,  # noqa: F401  (autouse fixture)
)

ALPHA, BETA0 = 0.05, 0.999


def reference_weights(f: list[list[float]], y: list[int], n: list[float], alpha: float = ALPHA,
                      beta0: float = BETA0) -> tuple[list[float], list[str]]:
    """H1–H9 written out with loops, straight from spec 4.2; also says which H8 branch each class took."""
    k, big_n = len(n), sum(n)
    members = [[j for j in range(len(y)) if y[j] == i] for i in range(k)]
    centers = [[sum(f[j][c] for j in members[i]) / n[i] for c in range(len(f[0]))] for i in range(k)]
    z = [sum(abs(f[j][c] - centers[y[j]][c]) for c in range(len(f[0]))) for j in range(len(y))]
    z_sum = [sum(z[j] for j in members[i]) for i in range(k)]
    z_bar_i = [z_sum[i] / n[i] for i in range(k)]
    z_bar = sum(z_bar_i) / k
    f_star = f_dist.ppf(1 - alpha, k - 1, big_n - k)
    msw = sum((z[j] - z_bar_i[y[j]]) ** 2 for j in range(len(y))) / (big_n - k)
    sb = [n[i] * (z_bar_i[i] - z_bar) ** 2 for i in range(k)]
    msb = sum(sb) / (k - 1)
    weights, branches = [], []
    for i in range(k):
        budget = f_star * msw * (k - 1) - (msb * (k - 1) - sb[i])
        a, b, c = z_bar**2, -(2 * z_bar * z_sum[i] + budget), z_sum[i] ** 2
        disc = b * b - 4 * a * c
        beta, branch = beta0, "no_root"
        if disc >= 0:
            low, high = sorted([abs((-b - math.sqrt(disc)) / (2 * a)), abs((-b + math.sqrt(disc)) / (2 * a))])
            branch = "inside"
            if n[i] < low:
                beta, branch = beta0 ** (1 / (low - n[i])), "below"
            elif n[i] > high:
                beta, branch = beta0 ** (1 / (n[i] - high)), "above"
        weights.append((1 - beta) / (1 - beta ** n[i]))
        branches.append(branch)
    return [k * w / sum(weights) for w in weights], branches


def small_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    return torch.randn(10, 3, generator=g) * (1 + y[:, None].float()), y


@pytest.mark.parametrize("seed, counts, branches", [
    (0, [50.0, 9.0, 3.0], ["no_root", "inside", "inside"]),
    (1, [50.0, 9.0, 3.0], ["above", "inside", "inside"]),
    (3, [6.0, 4.0, 4.0], ["no_root", "above", "below"]),
])
def test_homovar_weights_match_the_hand_computation(seed, counts, branches):
    """Every H8 branch, incl. a negative discriminant (no admissible size: β₀, as the code's NaN compares)."""
    f, y = small_batch(seed)
    got = homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0)
    expected, taken = reference_weights(f.tolist(), y.tolist(), counts)
    assert taken == branches
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert got.sum().item() == pytest.approx(3.0)


def test_homovar_loss_is_weighted_bce_on_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    w = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 3).float()
    bce = -(onehot * p.log() + (1 - onehot) * (1 - p).log()).sum(1)
    expected = (w.float()[y] * bce).sum() / 6
    torch.testing.assert_close(homovar_loss(logits, y, w), expected)
    saturated = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)  # P = 1 in float32: log(1 − P) guarded
    homovar_loss(saturated, torch.tensor([1]), w).backward()
    assert torch.isfinite(saturated.grad).all()


@pytest.mark.parametrize("case", ["absent_in_batch", "zero_global_count", "identical_features",
                                  "batch_counts_small", "beta0_one", "single_sample"])
def test_homovar_degenerate_cases_are_finite(case):
    f, y = small_batch(0)
    counts, beta0 = torch.tensor([50.0, 9.0, 3.0, 4.0]), BETA0   # class 3 is absent from the batch
    if case == "zero_global_count":
        counts = torch.tensor([50.0, 9.0, 3.0, 0.0])
    elif case == "identical_features":
        f = torch.ones_like(f)                                     # z̄ = 0: the quadratic degenerates
    elif case == "batch_counts_small":
        f, y = f[:3], y[:3]
        counts = torch.bincount(y, minlength=4).double()           # N ≤ K and n_i = 0 entries
    elif case == "beta0_one":
        beta0 = 1.0                                                # β = 1: the limit 1/n_i
    elif case == "single_sample":
        f, y = f[:1], y[:1]
    w = homovar_class_weights(f, y, counts, ALPHA, beta0)
    assert torch.isfinite(w).all() and (w >= 0).all()
    logits = torch.randn(len(y), 4, requires_grad=True)
    loss = homovar_loss(logits, y, w)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_class_sigma_batch_mode_by_hand():
    y = torch.tensor([0, 0, 0, 1])
    context = BatchContext(labels=y)
    # counts (3, 1): Σ n² = 10, p̃ = (0.3, 0.3, 0.3, 0.1), σ = 2 − p̃
    torch.testing.assert_close(ClassSigma("batch")(context, 4), torch.tensor([1.7, 1.7, 1.7, 1.9]))
    prior = BatchContext(labels=y, class_prior=torch.tensor([0.75, 0.25]))
    expected = 2.0 * (2 - torch.tensor([0.75] * 3 + [0.25]))
    torch.testing.assert_close(ClassSigma("prior", 2.0)(prior, 4), expected)
    assert ClassSigma("batch", 1.5)(BatchContext(), 4) == 3.0  # no labels: the test σ = 2·scale


def test_act_quantizer_uses_the_per_sample_sigma_in_training_only():
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    context = BatchContext(labels=torch.tensor([0, 0, 0, 1]))
    quant = CdfActQuantizer(3, class_sigma=ClassSigma("batch"))
    quant.context = context
    quant.initialized.fill_(True)
    sigma = torch.tensor([1.7, 1.7, 1.7, 1.9]).view(4, 1, 1, 1)
    torch.testing.assert_close(quant.train()(x), cdf_grid(normal_cdf(x / sigma), 3, 2.0))
    torch.testing.assert_close(quant.eval()(x), cdf_grid(normal_cdf(x / 2.0), 3, 2.0))


def test_task_loss_needs_global_counts_or_batch_mode():
    model, method, context = build("climbq")
    x, y = make_batch([0, 1, 2, 3, 0, 0])
    context.set_batch(y, 0)
    f = model.net.features(x)
    bare = BatchContext(class_prior=make_context().class_prior, labels=y, domain=0)
    with pytest.raises(ValueError, match="class_counts"):
        method.task_loss(model.net.classify(f), y, f, bare)
    batch_mode = get_method("climbq", count_mode="batch")
    assert torch.isfinite(batch_mode.task_loss(model.net.classify(f), y, f, bare))
    assert torch.isfinite(method.task_loss(model.net.classify(f), y, f, context))


def test_options():
    with pytest.raises(ValueError, match="climbq.sigma_mode"):
        get_method("climbq", sigma_mode="batch")
    with pytest.raises(ValueError, match="climbq.beta0"):
        get_method("climbq", beta0=1.5)
    assert get_method("climbq", sigma_mode="prior", sigma_scale=0.5).act_quantizer(4).class_sigma == \
        ClassSigma("prior", 0.5)
