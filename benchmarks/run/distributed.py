"""Data-parallel training across processes: one process per GPU (or per CPU share), one process group.

What makes G processes with batch B/G each train like one process with batch B (docs/distributed.md):

* the same start: every rank builds and calibrates the model from the same seed and the same (unsharded)
  first batch, then parameters and buffers are broadcast from rank 0 (by DistributedDataParallel at its
  construction, or here); a resumed run's ranks load the same weights, and each its own buffers, instead;
* the same data: each rank keeps rows ``[r·B/G, (r+1)·B/G)`` of every global batch of the epoch's seeded
  order (``Batches.shard``), so the ranks together see exactly the single-process batches;
* the same gradient: the gradients are averaged over the ranks; the average of the ranks' mean-loss
  gradients is the gradient of the global mean loss. For every method whose gradient comes from one
  ``backward()`` (``QuantMethod.gradients_from_backward``) the training forward is wrapped in PyTorch's
  ``DistributedDataParallel`` (``benchmarks.run.ddp_forward``), whose reducer all-reduces gradient buckets
  while the backward goes on. EmaQ and EmaQ-LT take per-domain gradients with ``torch.autograd.grad``, which
  DDP's reducer never sees: their gradients are averaged in one flat all-reduce by an optimizer step
  pre-hook;
* the same BatchNorm: with ``recipe.sync_bn`` each BatchNorm normalises with the mean and variance of the
  global batch (a differentiable all-reduce of per-channel sums, as ``nn.SyncBatchNorm``, which has no CPU
  kernel);
* metrics: the epoch's training loss is averaged and its accuracy counts summed over ranks; evaluation runs
  on every rank over the whole split (the ranks hold the same weights), and only rank 0 writes.

Dropout draws from each rank's own global RNG (seeded by seed and rank), so a distributed run's dropout masks
differ from a one-process run's; the run id holds ``processes`` for that reason.
"""
from __future__ import annotations

import datetime
import os
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from benchmarks.run.ddp_forward import DdpStepForward
from benchmarks.run.spec import Recipe
from benchmarks.run.trainer_parts import TaskModel
from methods.layers import QuantBatchNorm2d

# How long a rank waits in a collective for the others (a rank that died is noticed by the launcher first).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Rank:
    """This process's place in the group."""

    rank: int
    world_size: int
    local_rank: int  # index of this process on its machine: its GPU

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def current() -> Rank | None:
    """This process's rank when a process group of more than one process is up; None otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_writer() -> bool:
    """Whether this process writes the run directory (rank 0, or the only process)."""
    rank = current()
    return rank is None or rank.is_writer


def init_process_group(backend: str | None = None) -> Rank:
    """Join the group described by the torchrun variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
    LOCAL_RANK); ``gloo`` on CPU, ``nccl`` when CUDA is there. Idempotent: a requeued task calls it again."""
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:<local rank>``; the CPU stays the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(rank.local_rank)
        return torch.device("cuda", rank.local_rank)
    return device


class DataParallel:
    """The distributed side of one run on one rank: set up by ``join``, asked by the trainer."""

    def __init__(self, rank: Rank, ddp: DdpStepForward | None = None) -> None:
        self.rank = rank
        self.ddp = ddp  # None: gradients are averaged at the optimizer step (``average_gradients``)

    def start_step(self) -> None:
        """Called before every training step."""
        if self.ddp is not None:
            self.ddp.start_step()

    def average_gradients(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        """Optimizer step pre-hook: every gradient becomes its mean over the ranks (one flat all-reduce)."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.rank.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def reduce_epoch(self, loss_sum: torch.Tensor, tally: dict[str, Any]) -> torch.Tensor:
        """The epoch's loss sum averaged over ranks; ``tally``'s correct/seen counts summed (in place)."""
        seen = torch.tensor(float(tally["seen"]), dtype=torch.float64, device=loss_sum.device)
        packed = torch.stack([loss_sum.detach().double(), tally["correct"].double(), seen])
        dist.all_reduce(packed)
        tally["correct"] = packed[1].round().long()
        tally["seen"] = int(packed[2].item())
        return (packed[0] / self.rank.world_size).to(loss_sum.dtype)

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (time-based decisions must be taken by all ranks together)."""
        value = torch.tensor([int(flag)])
        dist.broadcast(value, 0)
        return bool(value.item())

    def gather(self, own: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rank's ``own`` entries, in rank order (tensors moved to the CPU)."""
        entries: list[Any] = [None] * self.rank.world_size
        dist.all_gather_object(entries, {k: v.cpu() if torch.is_tensor(v) else v for k, v in own.items()})
        return entries


def check_world(recipe: Recipe) -> None:
    """ValueError unless this process is in a group of ``recipe.processes`` (none for one process)."""
    rank = current()
    world = 1 if rank is None else rank.world_size
    if world != recipe.processes:
        raise ValueError(f"invalid world size {world} for a recipe with processes={recipe.processes}; start "
                         "data-parallel runs with benchmarks.run.distributed_run.run_scaled")


def join(model: TaskModel, optimizer: torch.optim.Optimizer, loader: Any, recipe: Recipe, seed: int,
         resumed: bool, gradients_from_backward: bool = True) -> DataParallel | None:
    """Make this rank's training part of the group (no-op for a one-process run): start from rank 0's model
    (a resumed run: from the checkpoint every rank loaded), average gradients at every step (through DDP when
    ``gradients_from_backward``, else at the optimizer step), shard the batches, synchronise BatchNorm, give
    each rank its own dropout RNG (a resumed run has restored it from the checkpoint). Raises ValueError when
    the process group does not have the recipe's number of processes (``check_world``)."""
    check_world(recipe)
    rank = current()
    if rank is None:
        return None
    loader.shard = (rank.rank, rank.world_size)
    if recipe.sync_bn:
        synchronise_batchnorm(model)
    if gradients_from_backward:
        device = next(model.parameters()).device
        # DDP's construction broadcasts rank 0's parameters and buffers, as the loop below
        parallel = DataParallel(rank, DdpStepForward(model, device, resumed))
    else:
        parallel = DataParallel(rank)
        # resumed: every rank loaded the same weights, and its own buffers, from the checkpoint
        if not resumed:
            for tensor in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(tensor.data, 0)
        optimizer.register_step_pre_hook(parallel.average_gradients)
    if not resumed:
        torch.manual_seed(seed + RANK_SEED_STRIDE * rank.rank)
    return parallel


def synchronise_batchnorm(model: nn.Module) -> None:
    """Every BatchNorm of ``model`` normalises training batches with the global batch's statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = types.MethodType(_synced_forward, module)  # type: ignore[method-assign]


def _synced_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    out = synced_batch_norm(self, x) if self.training else type(self).forward(self, x)
    if self.training and isinstance(self, QuantBatchNorm2d):
        out = self.act_quant(out)  # the post-BN quantizer site, as QuantBatchNorm2d.forward
    return out


def synced_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm in training mode with the mean and (biased) variance of the batch across all ranks; the
    running statistics get the unbiased variance of the global batch, as one process would record."""
    dims = [0] + list(range(2, x.dim()))
    channels = x.shape[1]
    count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
    # sums in float64: the variance as E[x²] − E[x]² loses digits in float32 when |mean| >> std
    wide = x.double()
    local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), count.double()])
    total = _SumOverRanks.apply(local)
    n = total[-1]
    mean64 = total[:channels] / n
    var = (total[channels:2 * channels] / n - mean64 * mean64).clamp_min(0).to(x.dtype)
    mean, n = mean64.to(x.dtype), n.to(x.dtype)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)  # type: ignore[union-attr]
            momentum = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None  # type: ignore[arg-type]
                        else bn.momentum)
            bn.running_mean.lerp_(mean.detach(), momentum)
            bn.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), momentum)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with its gradient: the backward of a sum over ranks is the sum over ranks of the
    incoming gradients (each rank's loss depends on every rank's statistics)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        total = local.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total
