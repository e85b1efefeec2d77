"""ClimbQ: the class-conditioned σ (V1–V4) and the HomoVar loss (H1–H10) against hand computations.

HomoVar's class weights are checked against two loop re-expressions that never call ``methods.homovar``: one
written from the authors' code (``tinganchen/ClimbQ``, ``utils/lt_loss.py``, ``HomoVar_loss.forward``) for the
default variant, one from the equations as ``docs/methods/climbq.md`` states them for the ``sorted``/``keep``
variant."""
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


def code_reference_weights(f: list[list[float]], y: list[int], n: list[float], alpha: float = ALPHA,
                           beta0: float = BETA0) -> tuple[list[float], list[float], list[str]]:
    """The authors' ``HomoVar_loss.forward`` up to the weights, in loops: (weights, b of H7, H8 branch).

    As the code: sample j's features sit in its label's slot of a (B, K, d) array of zeros; X̄ = slot sums /
    n_i; z = Σ_features |(X − X̄)·(X ≠ 0)| per (sample, class) (a feature exactly 0 adds nothing); MSW sums
    (z − z̄_i)²·(z ≠ 0) over every (sample, class); the two |roots| are kept in the order −√Δ, +√Δ; the
    branch is ``if n < n_lb … elif n > n_ub … else β₀``; a negative discriminant gives NaN roots (all False).
    """
    batch, k, d = len(f), len(n), len(f[0])
    x = [[[f[j][c] if y[j] == i else 0.0 for c in range(d)] for i in range(k)] for j in range(batch)]
    mean = [[sum(x[j][i][c] for j in range(batch)) / n[i] for c in range(d)] for i in range(k)]
    z = [[sum(abs((x[j][i][c] - mean[i][c]) * (x[j][i][c] != 0.0)) for c in range(d)) for i in range(k)]
         for j in range(batch)]
    zi_mean = [sum(z[j][i] for j in range(batch)) / n[i] for i in range(k)]
    z_mean = sum(zi_mean) / k
    big_n = sum(n)
    f_score = f_dist.ppf(1 - alpha, k - 1, big_n - k)
    ssw = sum((z[j][i] - zi_mean[i]) ** 2 * (z[j][i] != 0) for j in range(batch) for i in range(k))
    ssw /= big_n - k
    sb = [(zi_mean[i] - z_mean) ** 2 * n[i] for i in range(k)]
    ssb = sum(sb) / (k - 1)
    weights, bs, branches = [], [], []
    for i in range(k):
        z_i = sum(z[j][i] for j in range(batch))
        budget = f_score * ssw * (k - 1) - (ssb * (k - 1) - sb[i])
        a, b, c = z_mean**2, -(2 * z_mean * z_i + budget), z_i**2
        disc = b**2 - 4 * a * c
        root = math.sqrt(disc) if disc >= 0 else math.nan
        n_lb, n_ub = abs((-b - root) / (2 * a)), abs((-b + root) / (2 * a))
        if n[i] < n_lb:
            beta, branch = beta0 ** (1 / (n_lb - n[i])), "below"
        elif n[i] > n_ub:
            beta, branch = beta0 ** (1 / (n[i] - n_ub)), "above"
        else:
            beta, branch = beta0, "inside" if disc >= 0 else "no_root"
        weights.append((1 - beta) / (1 - beta ** n[i]))
        bs.append(b)
        branches.append(branch)
    return [w / sum(weights) * k for w in weights], bs, branches


def reference_weights(f: list[list[float]], y: list[int], n: list[float], alpha: float = ALPHA,
                      beta0: float = BETA0) -> tuple[list[float], list[str]]:
    """H1–H9 of ``docs/methods/climbq.md`` written out with loops, for ``homovar_roots="sorted"``,
    ``homovar_zero_features="keep"``; also says which H8 branch each class took."""
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
def test_homovar_sorted_keep_weights_match_the_hand_computation(seed, counts, branches):
    """Every H8 branch, incl. a negative discriminant (no admissible size: β₀, as the code's NaN compares)."""
    f, y = small_batch(seed)
    got = homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0, "sorted", "keep")
    expected, taken = reference_weights(f.tolist(), y.tolist(), counts)
    assert taken == branches
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert got.sum().item() == pytest.approx(3.0)


def assert_weights_follow_the_code(f: torch.Tensor, y: torch.Tensor, counts: list[float]) -> list[str]:
    """Our default weights equal the loop re-expression of the authors' code; returns its H8 branches."""
    expected, _, branches = code_reference_weights(f.tolist(), y.tolist(), counts)
    got = homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    return branches


def spread_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 twenty times the feature scale of classes 1, 2, each class tight: MSB ≫ MSW, so b > 0 (H7)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    return (torch.randn(10, 3, generator=g) * 0.05 + 1) * torch.tensor([20.0, 1.0, 1.0])[y][:, None], y


@pytest.mark.parametrize("seed, counts, branches, sorted_branches", [
    (0, [10.0, 10.0, 10.0], ["below"] * 3, ["below", "inside", "inside"]),
    (1, [6.0, 4.0, 4.0], ["no_root", "below", "below"], ["no_root", "inside", "inside"]),
])
def test_homovar_weights_follow_the_code_when_b_is_positive(seed, counts, branches, sorted_branches):
    """b > 0: both roots negative, |r₋| ≥ |r₊|: the code puts every such class outside the interval."""
    f, y = spread_batch(seed)
    _, bs, _ = code_reference_weights(f.tolist(), y.tolist(), counts)
    assert [b > 0 for b in bs] == [False, True, True]
    assert assert_weights_follow_the_code(f, y, counts) == branches
    assert reference_weights(f.tolist(), y.tolist(), counts)[1] == sorted_branches
    sorted_roots = homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0, roots="sorted")
    assert not torch.allclose(sorted_roots, homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0))


def test_homovar_weights_follow_the_code_with_zero_features():
    """Post-ReLU features: a third of them exactly 0, and one sample all 0 (its z is 0: left out of MSW)."""
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0, 1])
    f = torch.randn(12, 5, generator=torch.Generator().manual_seed(6)).relu()
    f[2] = 0.0
    assert (f == 0).sum() >= 20
    counts = [5.0, 4.0, 2.0, 1.0]  # the batch's counts: X̄_i is the class mean
    assert_weights_follow_the_code(f, y, counts)
    keep = homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0, zero_features="keep")
    assert (keep - homovar_class_weights(f, y, torch.tensor(counts), ALPHA, BETA0)).abs().max() > 0.1


@pytest.mark.parametrize("seed", range(4))
def test_homovar_weights_follow_the_code_on_random_batches(seed):
    g = torch.Generator().manual_seed(100 + seed)
    y = torch.cat([torch.arange(4), torch.randint(0, 4, (20,), generator=g)])
    f = (torch.randn(24, 6, generator=g) * torch.rand(4, generator=g)[y][:, None] * 3).relu()
    counts = [60.0, 25.0, 10.0, 4.0] if seed % 2 else torch.bincount(y, minlength=4).double().tolist()
    assert_weights_follow_the_code(f, y, counts)


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


@pytest.mark.parametrize("roots, zero_features", [("code", "drop"), ("sorted", "keep"), ("code", "keep"),
                                                   ("sorted", "drop")])
@pytest.mark.parametrize("case", ["absent_in_batch", "zero_global_count", "identical_features",
                                  "batch_counts_small", "beta0_one", "single_sample", "all_zero_features"])
def test_homovar_degenerate_cases_are_finite(case, roots, zero_features):
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
    elif case == "all_zero_features":
        f = torch.zeros_like(f)                                    # every z is 0
    w = homovar_class_weights(f, y, counts, ALPHA, beta0, roots, zero_features)
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


@pytest.mark.parametrize("roots, zero_features", [("code", "drop"), ("sorted", "keep")])
def test_task_loss_passes_the_homovar_variant(roots, zero_features):
    method = get_method("climbq", count_mode="batch", homovar_roots=roots,
                        homovar_zero_features=zero_features)
    f, y = spread_batch(0)
    f[0, 0] = 0.0
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(2))
    weights = homovar_class_weights(f, y, torch.bincount(y).double(), ALPHA, BETA0, roots, zero_features)
    expected = homovar_loss(logits, y, weights)
    assert torch.equal(method.task_loss(logits, y, f, BatchContext(labels=y)), expected)


def test_homovar_variant_options():
    assert get_method("climbq").hparams["homovar_roots"] == "code"
    assert get_method("climbq").hparams["homovar_zero_features"] == "drop"
    with pytest.raises(ValueError) as error:
        get_method("climbq", homovar_roots="ascending")
    assert str(error.value) == "invalid climbq.homovar_roots='ascending'; valid: code, sorted"
    with pytest.raises(ValueError) as error:
        get_method("climbq", homovar_zero_features=True)
    assert str(error.value) == "invalid climbq.homovar_zero_features=True; valid: drop, keep"
    with pytest.raises(ValueError, match="roots='v1'"):
        homovar_class_weights(torch.ones(2, 2), torch.tensor([0, 1]), torch.ones(2), ALPHA, BETA0, roots="v1")


def test_options():
    with pytest.raises(ValueError, match="climbq.sigma_mode"):
        get_method("climbq", sigma_mode="batch")
    with pytest.raises(ValueError, match="climbq.beta0"):
        get_method("climbq", beta0=1.5)
    assert get_method("climbq", sigma_mode="prior", sigma_scale=0.5).act_quantizer(4).class_sigma == \
        ClassSigma("prior", 0.5)
