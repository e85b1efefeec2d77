"""EmaQ-LT: EmaQ for long-tailed data — an INFERRED reconstruction, on top of ``methods.emaq_core``.

Equations and options: ``docs/methods/emaq-lt.md``.

* E8–E9 class-conditioned variance scaling: in training the projection of sample j is Φ((x − μ_d)/σ_d; 0, σ_j)
  with σ_j = s₀·h_j, h_j = 2 − π_{y_j} (``ltscale_mode="prior"``, global training prior) or 2 − p̃_j
  (``batch``, ClimbQ's V1–V2 in-batch form); at evaluation and for unlabelled parts h ≡ 2
  (``cdf.ClassSigma``).
* E10–E11 confidence-based logit adjustment: c_j = stopgrad(max_c softmax(z_j)_c) and
  L = CE(z_j + τ₀·c_j·log π, y_j) (``la_mode="conf_train"``); ``plain_la``: c_j ≡ 1 (Menon et al.);
  ``conf_posthoc``: plain CE in training and, at evaluation, z − τ₀·c(x)·log π (E12's optional variant).
  A class with prior 0 gets the smallest positive prior (log 0 is undefined).
* ``homovar=True``: each sample's loss is weighted by ClimbQ's HomoVar class weight (H1–H9, global training
  counts, α = 0.05, β₀ = 0.999, ``methods.homovar``) — an optional reweighting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.cdf import ClassSigma, check_option, is_number
from methods.context import BatchContext
from methods.emaq_core import EmaQBase
from methods.homovar import HOMOVAR_DEFAULTS, check_homovar_options, class_counts, homovar_class_weights
from methods.registry import register

LTSCALE_MODES: tuple[str, ...] = ("prior", "batch")
LA_MODES: tuple[str, ...] = ("conf_train", "conf_posthoc", "plain_la")
HOMOVAR_ALPHA, HOMOVAR_BETA0 = 0.05, 0.999  # ClimbQ's code defaults


def log_prior(context: BatchContext, num_classes: int) -> torch.Tensor:
    """log π (K,), with zero entries floored at the smallest positive prior."""
    prior = context.class_prior
    if prior is None or prior.numel() != num_classes:
        raise ValueError(f"logit adjustment needs context.class_prior with {num_classes} entries")
    floor = prior[prior > 0].min()
    return torch.log(torch.where(prior > 0, prior, floor)).float()


def max_confidence(logits: torch.Tensor) -> torch.Tensor:
    """E10: c = max_c softmax(z)_c, without gradient."""
    return torch.softmax(logits.detach().float(), dim=1).amax(1)


@register("emaq-lt")
class EmaQLT(EmaQBase):
    defaults = {**EmaQBase.defaults, "ltscale_mode": "prior", "s0": 1.0, "la_mode": "conf_train", "tau0": 1.0,
                "homovar": False, **HOMOVAR_DEFAULTS}
    search_space = {**EmaQBase.search_space, "tau0": ("float", 0.0, 2.0, False),
                    "s0": ("float", 0.5, 2.0, False)}

    def validate(self) -> None:
        super().validate()
        h = self.hparams
        self._check_choice("ltscale_mode", LTSCALE_MODES)
        self._check_choice("la_mode", LA_MODES)
        check_option(self, "s0", is_number(h["s0"]) and h["s0"] > 0, "a number > 0")
        check_option(self, "tau0", is_number(h["tau0"]) and h["tau0"] >= 0, "a number >= 0")
        check_option(self, "homovar", isinstance(h["homovar"], bool), "true, false")
        check_homovar_options(self)

    def class_sigma(self) -> ClassSigma:
        return ClassSigma(self.hparams["ltscale_mode"], float(self.hparams["s0"]))

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor,
                  context: BatchContext) -> torch.Tensor:
        """E10–E11 (or plain CE under ``conf_posthoc``), optionally HomoVar-weighted per sample."""
        mode, tau = self.hparams["la_mode"], float(self.hparams["tau0"])
        logits = logits.float()
        if mode != "conf_posthoc":
            confidence = max_confidence(logits) if mode == "conf_train" else torch.ones_like(logits[:, 0])
            strength = tau * confidence
            logits = logits + strength[:, None] * log_prior(context, logits.shape[1]).to(logits.device)
        per_sample = F.cross_entropy(logits, targets, reduction="none")
        h = self.hparams
        if h["homovar"]:
            counts = class_counts(context, targets, logits.shape[1], "global")
            weights = homovar_class_weights(features, targets, counts, HOMOVAR_ALPHA, HOMOVAR_BETA0,
                                            h["homovar_roots"], h["homovar_zero_features"])
            per_sample = per_sample * weights.to(per_sample)[targets]
        return per_sample.mean()

    def predict(self, logits: torch.Tensor, context: BatchContext) -> torch.Tensor:
        """E12: identity, or the confidence-scaled post-hoc adjustment under ``conf_posthoc``."""
        if self.hparams["la_mode"] != "conf_posthoc":
            return logits
        confidence = max_confidence(logits)[:, None]
        shift = float(self.hparams["tau0"]) * confidence * log_prior(context, logits.shape[1]).to(confidence)
        return logits - shift.to(logits)
