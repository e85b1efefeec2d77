"""ClimbQ's HomoVar loss (H1–H10), shared by ClimbQ (its task loss) and EmaQ-LT (optional reweighting).

Equations, guards and the two variant options: ``docs/methods/climbq.md``, "HomoVar loss". Per minibatch,
weights without gradient: Levene deviations of the penultimate features per class (H1–H3), the F quantile
F*_{K−1,N−K}(1 − α) (H4, scipy), between/within mean squares (H5), each class's budget (H6), the admissible
class-size interval from a quadratic (H7), β_i from the distance to it (H8), class-balanced weights (H9), and
a class-weighted binary cross-entropy on the softmax (H10).

Two details follow the authors' code by default and have the earlier reading as an option:

* ``roots`` (H7–H8): ``code`` keeps the two |roots| in the code's order, n_lb = |(−b − √Δ)/2a| and
  n_ub = |(−b + √Δ)/2a|, and tests n_i < n_lb before n_i > n_ub; when b > 0 both roots are negative, so
  n_lb ≥ n_ub and every class falls outside the interval. ``sorted``: n_lb ≤ n_ub (the smaller |root| first).
* ``zero_features`` (H2, H5): ``drop`` is the code's ``(X != 0)`` convention, where an exact zero marks an
  empty slot: a feature exactly 0 adds nothing to z_ij, and a sample whose z_ij is exactly 0 adds nothing to
  MSW. ``keep``: every feature enters z_ij and every sample enters MSW.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.stats import f as f_dist

from methods.base import QuantMethod
from methods.context import BatchContext, count_labels

COUNT_MODES: tuple[str, ...] = ("global", "batch")
ROOT_ORDERS: tuple[str, ...] = ("code", "sorted")
ZERO_FEATURES: tuple[str, ...] = ("drop", "keep")
# The options a method using HomoVar adds to its ``defaults`` (the authors' code first).
HOMOVAR_DEFAULTS = {"homovar_roots": "code", "homovar_zero_features": "drop"}


def check_homovar_options(method: QuantMethod) -> None:
    """One-line ValueError for a bad ``homovar_roots`` or ``homovar_zero_features``."""
    method._check_choice("homovar_roots", ROOT_ORDERS)
    method._check_choice("homovar_zero_features", ZERO_FEATURES)


def homovar_class_weights(features: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, alpha: float,
                          beta0: float, roots: str = "code", zero_features: str = "drop") -> torch.Tensor:
    """H1–H9: the normalised class weights w (K,) for one minibatch, in float64, without gradient.

    ``counts`` (K,) are the n_i of H1/H3/H5/H9: the global training counts (code) or the batch counts.
    ``roots`` and ``zero_features``: see the module docstring. Guards (the code would give NaN/inf): a class
    with n_i = 0 gets weight 0 and the weights are normalised to mean 1 over classes with n_i > 0; no real
    root (negative discriminant) or z̄ = 0 → β_i = β₀; β_i = 1 → the limit 1/n_i; fewer than two classes or
    N ≤ K → degrees of freedom floored at 1.
    """
    if roots not in ROOT_ORDERS or zero_features not in ZERO_FEATURES:
        raise ValueError(f"invalid HomoVar variant roots={roots!r}, zero_features={zero_features!r}; valid: "
                         f"roots {', '.join(ROOT_ORDERS)}; zero_features {', '.join(ZERO_FEATURES)}")
    f = features.detach().double().flatten(1)
    n = counts.detach().double().to(f.device)
    k = n.numel()
    if k < 2:
        return torch.ones(k, dtype=torch.float64, device=f.device)
    onehot = F.one_hot(labels, k).double()
    safe_n = n.clamp_min(1.0)
    centers = onehot.T @ f / safe_n[:, None]                          # H1: batch sum / n_i
    deviation = (f - centers[labels]).abs()
    if zero_features == "drop":
        deviation = deviation.masked_fill(f == 0, 0.0)
    z = deviation.sum(1)                                              # H2: L1 deviation per sample
    z_sum = onehot.T @ z                                              # H3: Z_i
    z_bar_i = z_sum / safe_n
    z_bar = z_bar_i.mean()
    dfd = max(float(n.sum()) - k, 1.0)
    f_star = float(f_dist.ppf(1.0 - alpha, k - 1, dfd))               # H4
    spread = (z - z_bar_i[labels]).pow(2)
    if zero_features == "drop":
        spread = spread.masked_fill(z == 0, 0.0)
    msw = spread.sum() / dfd                                          # H5
    sb = n * (z_bar_i - z_bar).pow(2)
    msb = sb.sum() / (k - 1)
    budget = f_star * msw * (k - 1) - (msb * (k - 1) - sb)            # H6
    a, b, c = z_bar.pow(2), -(2.0 * z_bar * z_sum + budget), z_sum.pow(2)   # H7: a·n² + b·n + c ≤ 0
    disc = b * b - 4.0 * a * c
    real = (disc >= 0) & (a > 0)
    root = disc.clamp_min(0.0).sqrt()
    a_safe = torch.where(a > 0, a, torch.ones_like(a))
    r1, r2 = ((-b - root) / (2 * a_safe)).abs(), ((-b + root) / (2 * a_safe)).abs()
    lower, upper = (r1, r2) if roots == "code" else (torch.minimum(r1, r2), torch.maximum(r1, r2))
    below = real & (n < lower)
    above = real & ~below & (n > upper)                               # the code's if/elif: below wins
    gap = torch.where(below, lower - n, torch.where(above, n - upper, torch.ones_like(n)))
    log_beta = torch.where(below | above, 1.0 / gap, torch.ones_like(n)) * math.log(beta0)   # H8 (log β_i)
    num, den = -torch.expm1(log_beta), -torch.expm1(n * log_beta)    # H9: (1 − β)/(1 − β^n), stably
    w = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0 / safe_n)
    w = torch.where(n > 0, w, torch.zeros_like(w))
    return w * (n > 0).sum() / w.sum()


def homovar_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """H10: (1/(B·K)) Σ_j w_{y_j} Σ_c BCE(P_jc, Y_jc), P = softmax(logits), log(1 − P) computed stably."""
    logp = F.log_softmax(logits.float(), dim=1)
    log_not_p = torch.log((-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny))
    onehot = F.one_hot(labels, logits.shape[1]).to(logp.dtype)
    per_sample = -(onehot * logp + (1.0 - onehot) * log_not_p).sum(1)
    return (class_weights.to(logp)[labels] * per_sample).sum() / logits.numel()


def class_counts(context: BatchContext, labels: torch.Tensor, num_classes: int,
                 count_mode: str) -> torch.Tensor:
    """The n_i of HomoVar: the global training counts (``context.class_counts``) or the batch's counts."""
    if count_mode == "batch":
        return count_labels(labels, num_classes).double()
    counts = context.class_counts
    if counts is None:
        raise ValueError("HomoVar with count_mode='global' needs context.class_counts (training counts)")
    return counts


def weighted_homovar(logits: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                     context: BatchContext, count_mode: str, alpha: float, beta0: float, roots: str = "code",
                     zero_features: str = "drop") -> torch.Tensor:
    """H1–H10 for one labelled batch."""
    counts = class_counts(context, labels, logits.shape[1], count_mode)
    weights = homovar_class_weights(features, labels, counts, alpha, beta0, roots, zero_features)
    return homovar_loss(logits, labels, weights)
