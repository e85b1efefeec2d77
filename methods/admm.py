"""AlignQ's ADMM correlation preservation, in the form of the authors' code (``docs/methods/alignq.md``).

Shared machinery: AlignQ runs it by default, EmaQ and EmaQ-LT behind their ``admm`` option. Per ADMM layer l,
with state D̃_l, Γ_l (B×B buffers):

* D_l = corr(Z) − corr(X): X the BN output, Z the aligned pre-rounding tensor, both flattened to B×d;
  corr(U) = ŨŨᵀ/d with Ũ standardised per feature column over the batch (std + 1e-5, the Office-31 variant).
* loss_l = μ·mean|D̃_l| + (ρ/2)·RMS(D_l − D̃_l) + mean(Γ_l ⊙ |D_l − D̃_l|), added to the task loss; the
  gradient reaches the weights only through D_l.
* after the optimizer step: V = D_l + Γ_l/ρ; D̃_l = (1 − μ/(ρ‖V‖_F))·V if ‖V‖_F > μ/ρ else 0 (A11);
  Γ_l ← Γ_l + ρ·(D_l − D̃_l) (A12), with the D_l of the step's forward pass(es).
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from methods.base import QuantMethod
from methods.cdf import CdfActQuantizer, check_option, is_number
from methods.layers import QuantBatchNorm2d

ADMM_LAYERS: tuple[str, ...] = ("all", "block_last")
CORR_EPS = 1e-5    # added to the per-column std (AlignQ's Office-31 code) so constant columns give no NaN
RMS_EPS = 1e-12    # keeps d sqrt/dx finite when D equals D̃ exactly


def batch_correlation(u: torch.Tensor) -> torch.Tensor:
    """corr(U) = ŨŨᵀ/d for U of shape (B, …), Ũ standardised per column: one (B×d)·(d×B) matmul."""
    flat = u.flatten(1)
    flat = (flat - flat.mean(0)) / (flat.std(0) + CORR_EPS)
    return flat @ flat.T / flat.shape[1]


def admm_layer_loss(d: torch.Tensor, d_tilde: torch.Tensor, gamma: torch.Tensor, mu: float,
                    rho: float) -> torch.Tensor:
    """The per-layer loss of the code: means, an RMS term, and Γ times |D − D̃|."""
    gap = d - d_tilde
    return (mu * d_tilde.abs().mean() + 0.5 * rho * (gap.pow(2).mean() + RMS_EPS).sqrt()
            + (gamma * gap.abs()).mean())


def admm_update(d: torch.Tensor, gamma: torch.Tensor, mu: float,
                rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed forms A11 (group soft-threshold of V = D + Γ/ρ, zero branch at ‖V‖_F ≤ μ/ρ; the previous D̃ does
    not enter) and A12; returns the new (D̃, Γ)."""
    v = d + gamma / rho
    norm = torch.linalg.matrix_norm(v)
    # where(), not `if norm > μ/ρ`: the branch is chosen on the device, with no host synchronisation per layer
    new_d_tilde = torch.where(norm > mu / rho, (1.0 - mu / (rho * norm)) * v, torch.zeros_like(v))
    return new_d_tilde, gamma + rho * (d - new_d_tilde)


class AdmmCorrelation(nn.Module):
    """ADMM state and terms of one activation layer; the observer of a ``CdfActQuantizer``.

    D̃ and Γ are buffers sized lazily to the first training batch (grown, never shrunk, if a larger batch
    comes) and sliced for a smaller one. Their U(0, 1) initialisation (the code's ``torch.rand``) comes from a
    generator seeded from ``torch.initial_seed()`` and the layer index: deterministic per run seed, and the
    global RNG stream (data order, augmentation) is left untouched.
    """

    d_tilde: torch.Tensor  # buffers, registered in __init__ and replaced when grown
    gamma: torch.Tensor

    def __init__(self, mu: float, rho: float, index: int) -> None:
        super().__init__()
        self.mu, self.rho, self.index = mu, rho, index
        self.register_buffer("d_tilde", torch.zeros(0, 0))
        self.register_buffer("gamma", torch.zeros(0, 0))
        self.loss: torch.Tensor | None = None
        self.pending: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> None:
        b = x.shape[0]
        if b < 2:  # a batch std needs two samples
            return
        d = batch_correlation(z) - batch_correlation(x)
        self._ensure_size(b, x.device)
        self.loss = admm_layer_loss(d, self.d_tilde[:b, :b], self.gamma[:b, :b], self.mu, self.rho)
        self.pending.append(d.detach())

    def reserve(self, batch_size: int) -> None:
        """Grow the buffers for ``batch_size`` now, as the first forward of that size would (same values: the
        seed depends on the run seed, the layer and the size only). ``torch.compile`` cannot trace the growth
        (a host generator), so a compiled run reserves before its first compiled forward."""
        self._ensure_size(batch_size, self.d_tilde.device)

    def _ensure_size(self, b: int, device: torch.device) -> None:
        size = self.d_tilde.shape[0]
        if b <= size:
            return
        seed = (torch.initial_seed() + 1_000_003 * (self.index + 1) + b) % 2**63
        generator = torch.Generator().manual_seed(seed)
        for name in ("d_tilde", "gamma"):
            grown = torch.rand(b, b, generator=generator).to(device)
            grown[:size, :size] = getattr(self, name)
            setattr(self, name, grown)

    def take_loss(self) -> torch.Tensor | None:
        """The loss of the latest training forward, handed out once."""
        loss, self.loss = self.loss, None
        return loss

    @torch.no_grad()
    def step(self) -> None:
        """A11 + A12 with the step's D: the entry-wise mean over its forward passes (one per domain part)."""
        if not self.pending:
            return
        b = max(d.shape[0] for d in self.pending)
        total = torch.zeros(b, b, device=self.d_tilde.device)
        count = torch.zeros(b, b, device=self.d_tilde.device)
        for d in self.pending:
            total[: d.shape[0], : d.shape[0]] += d.float()
            count[: d.shape[0], : d.shape[0]] += 1
        self.pending.clear()
        self.loss = None
        new_d_tilde, new_gamma = admm_update(total / count, self.gamma[:b, :b], self.mu, self.rho)
        self.d_tilde[:b, :b] = new_d_tilde
        self.gamma[:b, :b] = new_gamma

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The lazily sized buffers take the checkpoint's shape before the copy.
        for name in ("d_tilde", "gamma"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.d_tilde.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"mu={self.mu}, rho={self.rho}, size={self.d_tilde.shape[0]}"


def attach_admm(model: nn.Module, mu: float, rho: float, layers: str) -> int:
    """Give ADMM observers to the CDF activation quantizers chosen by ``layers``; returns how many.

    ``all``: every post-BN quantizer (AlignQ's ResNet-20/56 code). ``block_last``: the last post-BN quantizer
    among the direct children of each module holding at least two of them — the bn3 of each ResNet-50
    bottleneck, as in AlignQ's Office-31 code (the stem BN and shortcut BNs are then skipped).
    """
    named = [(name, m.act_quant) for name, m in model.named_modules()
             if isinstance(m, QuantBatchNorm2d) and isinstance(m.act_quant, CdfActQuantizer)]
    if layers == "all":
        chosen = [q for _, q in named]
    else:
        by_parent: dict[str, list[CdfActQuantizer]] = defaultdict(list)
        for name, q in named:
            by_parent[name.rpartition(".")[0]].append(q)
        chosen = [group[-1] for group in by_parent.values() if len(group) >= 2]
    for index, q in enumerate(chosen):
        q.observer = AdmmCorrelation(mu, rho, index)
    return len(chosen)


def _admm_modules(model: nn.Module) -> list[AdmmCorrelation]:
    return [m for m in model.modules() if isinstance(m, AdmmCorrelation)]


def admm_loss(model: nn.Module) -> torch.Tensor | None:
    """Σ_l loss_l of the latest training forward, or None where no ADMM layer produced one."""
    losses = []
    for m in _admm_modules(model):  # a loop, not a comprehension with ``:=``: torch.compile traces this
        loss = m.take_loss()
        if loss is not None:
            losses.append(loss)
    return torch.stack([loss.float() for loss in losses]).sum() if losses else None


def admm_step(model: nn.Module) -> None:
    for m in _admm_modules(model):
        m.step()


def check_admm_options(method: QuantMethod) -> None:
    """Validation of the ADMM options (``admm``, ``admm_layers``, ``mu``, ``rho``): AlignQ, EmaQ, EmaQ-LT."""
    h = method.hparams
    check_option(method, "admm", isinstance(h["admm"], bool), "true, false")
    method._check_choice("admm_layers", ADMM_LAYERS)
    check_option(method, "mu", is_number(h["mu"]) and h["mu"] >= 0, "a number >= 0")
    check_option(method, "rho", is_number(h["rho"]) and h["rho"] > 0, "a number > 0")
