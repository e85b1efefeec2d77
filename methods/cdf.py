"""The CDF ("alignment") quantizer of AlignQ, ClimbQ, EmaQ and EmaQ-LT (``docs/methods/cdf.md``, C1–C5).

* C1 weights: u = Φ(w; μ_w, σ_w) with μ_w, σ_w the mean and (unbiased) std of *this* weight tensor,
  computed with gradient flowing through them as in the authors' code; α_w = 1.
* C2 activations (BatchNorm output, before ReLU): u = Φ(t) with t = x standardised by a method-specific rule
  (AlignQ: t = x; EmaQ: per-domain statistics; ClimbQ/EmaQ-LT: an extra per-sample σ); α_a = 2.
* C3 grid: q = α·(2·round(n·u)/n − 1), n = 2^k − 1: exactly 2^k levels in [−α, α] (``quant.cdf_grid``).
* C4 backward: STE on round (∂q/∂u = 2α) and autograd through Φ (and through μ_w, σ_w), i.e.
  ∂L/∂w ≈ ∂L/∂q · 2α·φ(w; μ_w, σ_w) (+ μ/σ terms). ``grad_mode="paper_sigmoid"`` replaces the STE factor by
  AlignQ's Eq. 4 sigmoid surrogate (weights only, as Eq. 3–4 are stated for weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.base import ActQuantizer, QuantMethod, WeightQuantizer
from methods.context import BatchContext, count_labels
from methods.quant import cdf_grid, normal_cdf

ALPHA_W = 1.0  # weight range [−1, 1] (paper and code)
ALPHA_A = 2.0  # activation range [−2, 2] (the code's ``act_range``; the paper says 1)
GRAD_MODES: tuple[str, ...] = ("code", "paper_sigmoid")
STD_FLOOR = 1e-8  # keeps a constant weight tensor (σ = 0) from dividing by zero


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_option(method: QuantMethod, key: str, ok: bool, valid: str) -> None:
    """One-line ValueError for a non-choice option (bool, number range), in ``_check_choice``'s format."""
    if not ok:
        raise ValueError(f"invalid {method.name}.{key}={method.hparams[key]!r}; valid: {valid}")


def weight_cdf(w: torch.Tensor) -> torch.Tensor:
    """C1 before the affine map: u = Φ((w − μ_w)/σ_w), statistics of the current tensor, not detached."""
    return normal_cdf((w - w.mean()) / w.std().clamp_min(STD_FLOOR))


class _SigmoidSurrogateGrid(torch.autograd.Function):
    """C3 forward; backward ∂q/∂u = 2α·s(t)(1 − s(t)), AlignQ Eq. 4: t(q) = 2·{[(q/α + 0.5)(2^k − 1)] mod 1}.

    Applied literally to the quantized value (as Eq. 4 states), t is the same on every level because n is
    odd: (2j/n − 1 + 0.5)·n = 2j − n/2 ≡ 0.5 (mod 1), so t ≡ 1 and the surrogate is the STE scaled by
    s(1)(1 − s(1)) ≈ 0.197.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, bits: int, alpha: float) -> torch.Tensor:
        q = cdf_grid(u, bits, alpha)
        ctx.save_for_backward(q)
        ctx.bits, ctx.alpha = bits, alpha
        return q

    @staticmethod
    def backward(ctx, grad_q: torch.Tensor):
        (q,) = ctx.saved_tensors
        n = float(2**ctx.bits - 1)
        s = torch.sigmoid(2.0 * torch.remainder((q / ctx.alpha + 0.5) * n, 1.0))
        return grad_q * (2.0 * ctx.alpha) * s * (1.0 - s), None, None


def quantize_cdf(u: torch.Tensor, bits: int, alpha: float, grad_mode: str = "code") -> torch.Tensor:
    """C3 with the C4 backward (``code``: straight-through) or AlignQ's Eq. 4 one (``paper_sigmoid``)."""
    if grad_mode == "paper_sigmoid":
        return _SigmoidSurrogateGrid.apply(u, bits, alpha)
    return cdf_grid(u, bits, alpha)


class CdfWeightQuantizer(WeightQuantizer):
    """C1 + C3 (+ C4): per-tensor CDF projection of the weights onto 2^k levels in [−α_w, α_w]."""

    def __init__(self, bits: int, grad_mode: str = "code", alpha: float = ALPHA_W) -> None:
        super().__init__(bits)
        self.grad_mode, self.alpha = grad_mode, alpha

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_cdf(weight_cdf(w), self.bits, self.alpha, self.grad_mode)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha}, grad_mode={self.grad_mode}"


SIGMA_MODES: tuple[str, ...] = ("batch", "prior")


@dataclass(frozen=True)
class ClassSigma:
    """Per-sample projection σ from the sample's class (ClimbQ V1–V3, EmaQ-LT E8–E9).

    Training, labelled batch: σ_j = scale·(2 − share_j) with share_j = n^B_{y_j} / Σ_c (n^B_c)² (``batch``,
    V1–V2) or π_{y_j} (``prior``, global training prior). Otherwise (evaluation, unlabelled part):
    σ = 2·scale (V3).
    """

    mode: str
    scale: float = 1.0

    def __call__(self, context: BatchContext | None, batch_size: int) -> torch.Tensor | float:
        labels = context.labels if context is not None else None
        if context is None or labels is None or labels.numel() != batch_size:
            return 2.0 * self.scale
        if self.mode == "batch":
            prior = context.class_prior
            counts = count_labels(labels, prior.numel() if prior is not None else None)
            share = counts[labels] / (counts * counts).sum()
        else:
            if context.class_prior is None:
                raise ValueError("class-conditioned σ in 'prior' mode needs context.class_prior")
            share = context.class_prior.to(labels.device)[labels]
        return self.scale * (2.0 - share)


class CdfActQuantizer(ActQuantizer):
    """C2 + C3 at the post-BN site: q = α_a·(2·round(n·Φ(t/σ_j))/n − 1), t = ``standardize(x)``.

    ``class_sigma`` (ClimbQ, EmaQ-LT) divides t by a per-sample σ during training and by the test σ otherwise.
    ``observer`` (AlignQ's ADMM) is called in training with the BN output X and the aligned, pre-rounding
    Z = α_a·(2u − 1); it is a submodule, so its state is saved with the model.
    """

    def __init__(self, bits: int, signed: bool | None = None, class_sigma: ClassSigma | None = None,
                 alpha: float = ALPHA_A) -> None:
        super().__init__(bits, signed)
        self.class_sigma, self.alpha = class_sigma, alpha
        self.observer: nn.Module | None = None

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """The CDF argument before any class scaling; AlignQ/ClimbQ: Φ(x; 0, 1), so x itself."""
        return x

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        t = self.standardize(x)
        if self.class_sigma is not None:
            sigma = self.class_sigma(self.context if self.training else None, x.shape[0])
            if isinstance(sigma, torch.Tensor):
                sigma = sigma.to(t.dtype).view(-1, *([1] * (x.dim() - 1)))
            t = t / sigma
        u = normal_cdf(t)
        if self.observer is not None and self.training:
            self.observer(x, self.alpha * (2.0 * u - 1.0))
        return cdf_grid(u, self.bits, self.alpha)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha}, class_sigma={self.class_sigma}"
