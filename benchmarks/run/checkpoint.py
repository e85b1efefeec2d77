"""The resumable checkpoint: model, optimizer, method state, RNG and the run's history at an epoch boundary."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def save_checkpoint(path: Path, state: dict, model: nn.Module, optimizer, method) -> None:
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "method": method.state_dict(), "rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, model: nn.Module, optimizer, method, device: torch.device) -> dict:
    payload = torch.load(path, map_location=device, weights_only=True)  # never unpickles code
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    method.load_state_dict(payload.pop("method"))
    torch.set_rng_state(payload.pop("rng").cpu())
    cuda_rng = payload.pop("cuda_rng")
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return payload
