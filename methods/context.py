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


@dataclass
class DomainBatch:
    """One domain's part of a training step: inputs, labels (None when unlabelled) and domain id."""

    x: torch.Tensor
    y: torch.Tensor | None
    domain: int
