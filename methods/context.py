"""What a quantizer may know about the current batch, and how a batch from one domain is passed around."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BatchContext:
    """Per-batch information shared by every quantizer of one model (one object per prepared model).

    The trainer sets it before each forward pass. ``labels`` are present only for labelled training batches
    (never at evaluation); ``domain`` is the integer domain id of the batch (0 = first source);
    ``class_prior`` is the training label distribution (K,) and ``class_counts`` the training images per class
    (K,), both set once per run.
    """

    labels: torch.Tensor | None = None
    domain: int | None = None
    class_prior: torch.Tensor | None = None
    class_counts: torch.Tensor | None = None
    num_domains: int = 1

    def set_batch(self, labels: torch.Tensor | None, domain: int | None) -> None:
        self.labels = labels
        self.domain = domain


def count_labels(labels: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Images per class in a batch, float32 (K,). With K known this is a scatter-add, which on a GPU needs no
    host synchronisation (``torch.bincount`` reads the largest label back to size its output); the counts are
    the same integers either way."""
    if num_classes is None:
        return torch.bincount(labels).float()
    ones = torch.ones_like(labels, dtype=torch.float)
    return torch.zeros(num_classes, device=labels.device).index_add_(0, labels, ones)


@dataclass
class DomainBatch:
    """One domain's part of a training step: inputs, labels (None when unlabelled) and domain id."""

    x: torch.Tensor
    y: torch.Tensor | None
    domain: int
