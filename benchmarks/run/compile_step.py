"""Compiled steps (issue 18): ``torch.compile`` of a prepared network's ``features()`` and ``classify()``, and
whether its steps may be captured as CUDA graphs.

``features()`` and ``classify()`` are what both the training loss and evaluation call, and where every
quantizer runs, so the same compiled functions serve training (forward + the AOT-compiled backward) and
evaluation; the loss hooks, optimizer step and ``post_step`` stay eager. The quantizers trace their composite
ops under compilation (``methods.quant.compiling``) and the compiler fuses them; compiled results are
therefore close to eager results but not bit-identical (``docs/speed.md``).

CUDA graphs (``mode="reduce-overhead"``) replay a recorded step: each replay writes its outputs into the same
memory. A method whose hooks keep a forward's tensors past the step would see them overwritten, so such a
method is compiled without capture; ``cuda_graph_blockers`` names why.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead")


@dataclass(frozen=True)
class CompilePlan:
    """How a run's features are compiled: the torch.compile mode and, when not captured, why."""

    mode: str
    blockers: tuple[str, ...] = ()

    @property
    def cuda_graphs(self) -> bool:
        return self.mode == "reduce-overhead"

    def describe(self) -> str:
        if self.cuda_graphs:
            return "compiled features() with CUDA graphs (mode reduce-overhead)"
        return f"compiled features() (mode {self.mode}; no CUDA graphs: {'; '.join(self.blockers)})"


def cuda_graph_blockers(net: nn.Module, device: torch.device, parts_per_step: int = 1) -> list[str]:
    """Why the steps of ``net`` cannot be captured as CUDA graphs (empty: they can)."""
    reasons = []
    if device.type != "cuda":
        reasons.append(f"CUDA graphs need a CUDA device (got {device.type})")
    # AlignQ's ADMM observers append each forward's correlation matrix to a list read after the step.
    if any(getattr(m, "observer", None) is not None for m in net.modules()):
        reasons.append("ADMM observers keep each forward's tensors past the step (a replay overwrites them)")
    if parts_per_step > 1:
        reasons.append(f"{parts_per_step} forward passes per step (one per domain) before one backward")
    return reasons


def plan_compile(net: nn.Module, device: torch.device, parts_per_step: int = 1,
                 cuda_graphs: bool = True) -> CompilePlan:
    """``reduce-overhead`` (CUDA graphs) where allowed and wanted, else ``default``."""
    blockers = tuple(cuda_graph_blockers(net, device, parts_per_step))
    if cuda_graphs and not blockers:
        return CompilePlan("reduce-overhead")
    return CompilePlan("default", blockers if cuda_graphs else ("CUDA graphs not requested",))


def compile_features(net: nn.Module, plan: CompilePlan, batch_size: int) -> str:
    """Replace ``net.features`` and ``net.classify`` by compiled versions (instance attributes: the state
    dict, checkpoints and the eager ``forward`` code are untouched); returns a line for the log. Static
    shapes: a last, smaller evaluation batch compiles once more instead of every graph carrying symbolic
    sizes. Modules that grow state on a batch size they first see (ADMM observers) ``reserve`` it first."""
    # Each model compiles its own graphs (dynamo guards on the module); a process that builds many models (a
    # tuning study, the speed benchmark) would pass the default limit of 8 and fall back to eager silently.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for module in net.modules():
        reserve = getattr(module, "reserve", None)
        if callable(reserve):
            reserve(batch_size)
    for name in ("features", "classify"):
        setattr(net, name, torch.compile(getattr(net, name), mode=plan.mode, dynamic=False))
    return plan.describe()
