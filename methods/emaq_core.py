"""EmaQ's machinery (Yeh, Chen, Yang, Chen, arXiv 2606.04920), INFERRED: shared by EmaQ and EmaQ-LT.

Only the abstract is public; ``docs/methods/emaq.md`` states the reconstruction (E1–E7) built from it, AlignQ
and ClimbQ. Every rule here is our design (INFERRED), kept behind options so it is easy to change.

* E1–E2 CDF projection with per-domain statistics: each post-BN activation quantizer keeps per-domain,
  per-channel EMAs (m = ``stat_momentum``) of the BN output's mean and (biased) variance, as buffers
  (num_domains, C). Training: standardise with the batch's own statistics (gradient flows through them, as in
  BN) and update the EMA of the batch's domain. Evaluation: the EMA of ``context.domain``; a domain never seen
  in training (id None, or no statistics) uses the equal-weight mixture of the seen domains' statistics.
  ``stats="per_batch"``: batch statistics at evaluation too; ``stats="shared_bn"``: Φ(x; 0, 1) as AlignQ's
  code (BN alone aligns).
* E3 weights: ``methods.cdf`` C1 + C3, shared across domains.
* E4–E7 sensitivity-aware aggregation (``training_step``): per domain d the gradient g_d of its loss (autograd
  ``None``: the domain does not reach that parameter and is left out of its aggregation); per parameter
  tensor ("layer") S_d ← β_s·S_d + (1 − β_s)·mean(g_d²) (the first observation initialises S_d; ``element``:
  no mean); ω_d = (S_d + ε)^γ / Σ_d' (S_d' + ε)^γ; grad = Σ_d ω_d·g_d, then the optimizer's step (momentum,
  weight decay). γ = 0 is the plain average of the per-domain gradients (computed as a mean, bit-exact).
  ``local_steps`` K > 1: FedAvg-style local models — each domain takes K plain-SGD steps from the shared
  weights on its batch (lr of the parameter's group); the aggregated pseudo-gradient is Σ_d ω_d·Σ_k g_d^(k),
  so a plain-SGD server step reproduces FedAvg exactly; S uses the first local gradient.
* Optional AlignQ ADMM (``admm``, default off, ``methods.admm``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from methods.admm import admm_loss, admm_step, attach_admm, check_admm_options
from methods.base import ActQuantizer, LayerPolicy, LossFn, QuantMethod, WeightQuantizer
from methods.cdf import CdfActQuantizer, CdfWeightQuantizer, ClassSigma, check_option, is_number
from methods.context import BatchContext, DomainBatch
from methods.layers import QuantBatchNorm2d
from methods.quant import batch_standardize, batch_standardize_native

STATS_MODES: tuple[str, ...] = ("per_domain_ema", "per_batch", "shared_bn")
SENS_GRANULARITIES: tuple[str, ...] = ("layer", "element")
# How the training-time batch statistics are computed: ``exact`` is bit-identical to the composite
# (x − mean)/√(var + ε) the results were recorded with; ``native_bn`` is BatchNorm's fused kernel, ~4x
# faster per call on the CPU but summing in another order (values differ by ~1e-5): opt-in (issue #8).
STAT_KERNELS: tuple[str, ...] = ("exact", "native_bn")
BN_EPS = 1e-5


class DomainCdfActQuantizer(CdfActQuantizer):
    """E1–E2: Φ((x − μ_d)/σ_d) per channel, with per-domain EMA statistics as buffers (num_domains, C)."""

    ema_mean: torch.Tensor  # buffers, registered in __init__ and replaced by resize()
    ema_var: torch.Tensor
    seen: torch.Tensor

    def __init__(self, bits: int, signed: bool | None, stats: str, momentum: float,
                 class_sigma: ClassSigma | None = None, stat_kernel: str = "exact") -> None:
        super().__init__(bits, signed, class_sigma)
        self.stats, self.momentum, self.stat_kernel = stats, momentum, stat_kernel
        self.register_buffer("ema_mean", torch.zeros(0, 0))
        self.register_buffer("ema_var", torch.zeros(0, 0))
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))
        self._seen_host: list[bool] | None = None  # ``seen`` mirrored on the host: no GPU sync per forward

    def resize(self, num_domains: int, channels: int) -> None:
        device = self.ema_mean.device
        self.ema_mean = torch.zeros(num_domains, channels, device=device)
        self.ema_var = torch.ones(num_domains, channels, device=device)
        self.seen = torch.zeros(num_domains, dtype=torch.bool, device=device)
        self._seen_host = None

    def _seen(self) -> list[bool]:
        if self._seen_host is None:
            self._seen_host = self.seen.tolist()
        return self._seen_host

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._seen_host = None

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats == "shared_bn":
            return x
        if self.training or self.stats == "per_batch":
            # Looked up at call time: the results-unchanged guard swaps in ``batch_standardize``'s reference.
            kernel = batch_standardize if self.stat_kernel == "exact" else batch_standardize_native
            standardized, mean, var = kernel(x, BN_EPS)
            if self.training and self.stats == "per_domain_ema":
                self._track(mean, var)
            return standardized
        mean, var = self.domain_statistics(self.context.domain if self.context is not None else None)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean.view(shape)).div_((var.view(shape) + BN_EPS).sqrt())  # one buffer: same values

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """E1 for the batch's domain (no domain id: nothing to track)."""
        domain = self.context.domain if self.context is not None else None
        if self.context is None or domain is None:
            return
        if self.ema_mean.shape[1:] != mean.shape:  # used outside prepare()/attach(): size on first use
            self.resize(max(self.context.num_domains, domain + 1), mean.numel())
        if not 0 <= domain < self.seen.numel():
            raise ValueError(f"domain id {domain} outside 0..{self.seen.numel() - 1} (context.num_domains)")
        if self._seen()[domain]:
            self.ema_mean[domain].lerp_(mean.float(), 1.0 - self.momentum)
            self.ema_var[domain].lerp_(var.float(), 1.0 - self.momentum)
        else:
            self.ema_mean[domain] = mean
            self.ema_var[domain] = var
            self.seen[domain] = True
            self._seen()[domain] = True

    def domain_statistics(self, domain: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """EMA of ``domain``; else the equal-weight mixture of the seen domains; else (0, 1)."""
        if domain is not None and 0 <= domain < self.seen.numel() and self._seen()[domain]:
            return self.ema_mean[domain], self.ema_var[domain]
        seen = [d for d, flag in enumerate(self._seen()) if flag]  # host-side indices: no boolean-mask sync
        if seen:
            means, variances = self.ema_mean[seen], self.ema_var[seen]
            pooled = means.mean(0)
            return pooled, (variances + means * means).mean(0) - pooled * pooled
        return self.ema_mean.new_zeros(()), self.ema_mean.new_ones(())

    def extra_repr(self) -> str:
        kernel = "" if self.stat_kernel == "exact" else f", stat_kernel={self.stat_kernel}"
        return f"{super().extra_repr()}, stats={self.stats}{kernel}, domains={self.seen.numel()}"


def aggregation_weights(sensitivity: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """E6 along dim 0 (domains): (S + ε)^γ normalised, computed as softmax(γ·log(S + ε)) so it sums to 1."""
    return torch.softmax(gamma * torch.log(sensitivity.double() + eps), dim=0).to(sensitivity.dtype)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return a if b is None else b if a is None else a + b


class EmaQBase(QuantMethod):
    """EmaQ's machinery; ``methods.emaq`` registers it as is, ``methods.emaq_lt`` extends it."""

    act_site = "post_bn"
    quantized_types = (nn.Conv2d,)
    default_layer_policy = LayerPolicy("same", "fp")
    defaults = {"stats": "per_domain_ema", "stat_kernel": "exact", "stat_momentum": 0.9, "gamma": 1.0,
                "sens_granularity": "layer", "beta_s": 0.9, "eps": 1e-12, "local_steps": 1, "admm": False,
                "admm_layers": "all", "mu": 0.2, "rho": 0.3}
    search_space = {"gamma": ("float", -1.0, 2.0, False), "beta_s": ("float", 0.5, 0.99, False)}
    # E4–E7 take per-domain gradients with torch.autograd.grad, outside DDP's reducer
    gradients_from_backward = False

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.num_domains = 1
        self.sensitivity: dict[str, torch.Tensor] = {}  # parameter name -> S, (M,) or (M, *shape)
        self.sens_seen: dict[str, torch.Tensor] = {}    # parameter name -> (M,) bool

    def validate(self) -> None:
        h = self.hparams
        self._check_choice("stats", STATS_MODES)
        self._check_choice("stat_kernel", STAT_KERNELS)
        self._check_choice("sens_granularity", SENS_GRANULARITIES)
        check_option(self, "stat_momentum", is_number(h["stat_momentum"]) and 0 <= h["stat_momentum"] < 1,
                     "a number in [0, 1)")
        check_option(self, "gamma", is_number(h["gamma"]), "a number")
        check_option(self, "beta_s", is_number(h["beta_s"]) and 0 <= h["beta_s"] < 1, "a number in [0, 1)")
        check_option(self, "eps", is_number(h["eps"]) and h["eps"] > 0, "a number > 0")
        steps = h["local_steps"]
        is_int = isinstance(steps, int) and not isinstance(steps, bool)
        check_option(self, "local_steps", is_int and steps >= 1, "an integer >= 1")
        check_admm_options(self)

    # -- construction -------------------------------------------------------------------------------
    def class_sigma(self) -> ClassSigma | None:
        """Per-sample σ of the activation projection; none in EmaQ (EmaQ-LT's E8–E9)."""
        return None

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        return CdfWeightQuantizer(bits)

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        h = self.hparams
        return DomainCdfActQuantizer(bits, signed, h["stats"], float(h["stat_momentum"]), self.class_sigma(),
                                     h["stat_kernel"])

    def attach(self, model: nn.Module, context: BatchContext) -> None:
        self.num_domains = max(1, int(context.num_domains))
        for m in model.modules():
            if isinstance(m, QuantBatchNorm2d) and isinstance(m.act_quant, DomainCdfActQuantizer):
                m.act_quant.resize(self.num_domains, m.num_features)
        h = self.hparams
        if h["admm"]:
            attach_admm(model, float(h["mu"]), float(h["rho"]), h["admm_layers"])

    # -- training -------------------------------------------------------------------------------------
    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        return admm_loss(model) if self.hparams["admm"] else None

    def post_step(self, model: nn.Module) -> None:
        if self.hparams["admm"]:
            admm_step(model)

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, parts: Sequence[DomainBatch],
                      loss_fn: LossFn) -> torch.Tensor:
        """E4–E7: per-domain gradients (or K local steps), sensitivity update, aggregation, one step."""
        entries = [(p, group["lr"]) for group in optimizer.param_groups for p in group["params"]
                   if p.requires_grad]
        params, lrs = [p for p, _ in entries], [lr for _, lr in entries]
        names = _parameter_names(model, params)
        by_domain: dict[int, list[DomainBatch]] = {}
        for part in parts:
            if not 0 <= part.domain < self.num_domains:
                raise ValueError(f"domain id {part.domain} outside 0..{self.num_domains - 1} "
                                 "(context.num_domains)")
            by_domain.setdefault(part.domain, []).append(part)
        optimizer.zero_grad(set_to_none=True)
        losses, updates, first_grads = [], {}, {}
        for domain, domain_parts in by_domain.items():
            updates[domain], first_grads[domain], loss = self._local_run(params, lrs, domain_parts, loss_fn)
            losses.append(loss.float())
        for index, (name, p) in enumerate(zip(names, params)):
            reached = [d for d in by_domain if updates[d][index] is not None]
            if not reached:
                continue
            for d in reached:
                self._track_sensitivity(name, d, first_grads[d][index])
            p.grad = self._aggregate(name, reached, [updates[d][index] for d in reached])
        optimizer.step()
        self.post_step(model)
        return torch.stack(losses).sum()

    def _local_run(self, params: list[nn.Parameter], lrs: list[float], parts: list[DomainBatch],
                   loss_fn: LossFn) -> tuple[list, list, torch.Tensor]:
        """One domain: (Σ_k local gradients, the first gradient, the first loss); weights restored after."""
        steps = int(self.hparams["local_steps"])
        start = [p.detach().clone() for p in params] if steps > 1 else None
        total: list[torch.Tensor | None] = [None] * len(params)
        for step in range(steps):
            # int 0 + the first loss, as the results were recorded with; a tensor here.
            loss = cast(torch.Tensor, sum(loss_fn(part) for part in parts))
            grads = (torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad
                     else (None,) * len(params))
            if step == 0:
                first, first_loss = list(grads), loss.detach()
            total = [_add(a, g) for a, g in zip(total, grads)]
            if step < steps - 1:
                with torch.no_grad():
                    for p, g, lr in zip(params, grads, lrs):
                        if g is not None:
                            p.sub_(lr * g)
        if start is not None:
            with torch.no_grad():
                for p, value in zip(params, start):
                    p.copy_(value)
        return total, first, first_loss

    @torch.no_grad()
    def _track_sensitivity(self, name: str, domain: int, grad: torch.Tensor) -> None:
        """E5; the state is created on first use, on the parameter's device."""
        value = grad.float().pow(2)
        if self.hparams["sens_granularity"] == "layer":
            value = value.mean()
        if name not in self.sensitivity:
            self.sensitivity[name] = value.new_zeros((self.num_domains, *value.shape))
            self.sens_seen[name] = torch.zeros(self.num_domains, dtype=torch.bool)
        # A loaded state is on the CPU.
        state = self.sensitivity[name] = self.sensitivity[name].to(value.device)
        if bool(self.sens_seen[name][domain]):
            state[domain].lerp_(value, 1.0 - float(self.hparams["beta_s"]))
        else:
            state[domain] = value
            self.sens_seen[name][domain] = True

    def _aggregate(self, name: str, domains: list[int], grads: list[torch.Tensor]) -> torch.Tensor:
        """E6–E7 over the domains that reach this parameter."""
        if len(grads) == 1:
            return grads[0]
        stacked = torch.stack(grads)
        if float(self.hparams["gamma"]) == 0.0:
            return stacked.mean(0)
        sensitivity = self.sensitivity[name][domains].to(stacked.device)
        weights = aggregation_weights(sensitivity, float(self.hparams["gamma"]), float(self.hparams["eps"]))
        if weights.dim() == 1:  # layer granularity: one weight per domain
            weights = weights.view(-1, *([1] * (stacked.dim() - 1)))
        return (weights.to(stacked.dtype) * stacked).sum(0)

    # -- state outside the model ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"sensitivity": {k: v.detach().cpu().clone() for k, v in self.sensitivity.items()},
                "sens_seen": {k: v.clone() for k, v in self.sens_seen.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sensitivity = {k: v.clone() for k, v in state.get("sensitivity", {}).items()}
        self.sens_seen = {k: v.clone() for k, v in state.get("sens_seen", {}).items()}


def _parameter_names(model: nn.Module, params: list[nn.Parameter]) -> list[str]:
    """Names for the sensitivity state; a parameter outside ``model`` is named by its optimizer position."""
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id.get(id(p), f"optimizer_param.{i}") for i, p in enumerate(params)]
