"""The resumable checkpoint: model, optimizer, method state, RNG and the run's history at an epoch boundary,
or mid-epoch (``position``: steps done in the epoch, with the epoch's running loss and accuracy tallies).

In a data-parallel run every rank calls ``save_checkpoint``: the entries each rank holds for itself
(``RANK_LOCAL``: its RNG state, its share of the epoch's running tallies, its method state, and its model
buffers, which per-rank statistics such as EmaQ's domain EMAs make differ between ranks) are gathered into
``per_rank``, rank 0 alone writes, and on resume each rank takes its own entries back.

Saved under a unique temporary name and renamed into place, so a job killed mid-save leaves the previous
checkpoint intact and two writers never share a file. Loaded with ``weights_only=True``: a checkpoint holds
tensors and plain containers only, so a file planted in a run directory can never run code when unpickled.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.run import distributed
from benchmarks.run.rundir import atomic_write_with

RANK_LOCAL = ("rng", "loss_sum", "correct", "seen", "method", "buffers")


class CheckpointUnusable(Exception):
    """A checkpoint that cannot be resumed from; it has been moved aside (``moved_to``)."""

    def __init__(self, message: str, moved_to: Path) -> None:
        super().__init__(message)
        self.moved_to = moved_to


def save_checkpoint(path: Path, state: dict, model: nn.Module, optimizer, method) -> None:
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "method": method.state_dict(), "rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    rank = distributed.current()
    if rank is not None:
        own = {key: payload[key] for key in RANK_LOCAL if key in payload}
        own["buffers"] = {name: buffer.detach() for name, buffer in model.named_buffers()}
        payload["per_rank"] = distributed.DataParallel(rank).gather(own)
    if distributed.is_writer():
        atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's payload; raises CheckpointUnusable (after moving the file aside) when it is garbage,
    truncated, not a checkpoint, or would execute code when unpickled."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        needed = {"model", "optimizer", "method", "rng", "epoch"}
        if not isinstance(payload, dict) or not needed <= set(payload):
            raise ValueError("not a qbench checkpoint (keys missing)")
    except Exception as err:  # noqa: BLE001 - any failure to read means: restart without it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it holds objects that would run code when unpickled (refused by weights_only loading)"
        aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
        path.replace(aside)
        raise CheckpointUnusable(f"checkpoint {path} refused: {reason}; moved to {aside.name}, the run "
                                 "restarts from its beginning", aside) from None
    return payload


def apply_checkpoint(payload: dict[str, Any], model: nn.Module, optimizer, method) -> dict[str, Any]:
    """Restore model, optimizer, method state and RNG; returns the rest (epoch, step, history, timings)."""
    payload = dict(payload)
    per_rank, rank = payload.pop("per_rank", None), distributed.current()
    if per_rank is not None and rank is not None and len(per_rank) == rank.world_size:
        payload.update(per_rank[rank.rank])
    model.load_state_dict(payload.pop("model"))
    buffers = payload.pop("buffers", None)
    if buffers is not None:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    optimizer.load_state_dict(payload.pop("optimizer"))
    method.load_state_dict(payload.pop("method"))
    torch.set_rng_state(payload.pop("rng").cpu())
    cuda_rng = payload.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return payload
