"""The resumable checkpoint: model, optimizer, method state, RNG and the run's history at an epoch boundary.

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

from benchmarks.run.rundir import atomic_write_with


class CheckpointUnusable(Exception):
    """A checkpoint that cannot be resumed from; it has been moved aside (``moved_to``)."""

    def __init__(self, message: str, moved_to: Path) -> None:
        super().__init__(message)
        self.moved_to = moved_to


def save_checkpoint(path: Path, state: dict, model: nn.Module, optimizer, method) -> None:
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "method": method.state_dict(), "rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
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
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    method.load_state_dict(payload.pop("method"))
    torch.set_rng_state(payload.pop("rng").cpu())
    cuda_rng = payload.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return payload
