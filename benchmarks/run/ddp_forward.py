"""The training forward of a data-parallel run, wrapped in PyTorch's ``DistributedDataParallel``.

DDP reduces gradients from hooks on each parameter's gradient accumulator, armed by a call of the wrapped
module. ``make_loss_fn`` runs ``features()``, ``classify()`` and the DANN domain head as methods of the
network, so ``TrainingForward`` gathers them into one module whose call DDP can see; the loss is composed
around it exactly as in a one-process run.

Settings (docs/distributed.md, "Gradients: DistributedDataParallel"):

* ``find_unused_parameters=True``: some trainable parameters get no gradient in some steps (QT-DoG's step
  sizes before its onset, its weights frozen at the onset under ``rebuild_optimizer: false``); DDP then marks
  them ready itself and leaves their ``.grad`` None, as one process leaves it.
* One forward per domain part, then one backward of their sum. DDP's search for unused parameters starts from
  the outputs of the *last* forward before the backward; a DANN target part (no labels, no classifier) comes
  last, so the classifier would be taken for unused and then reported ready twice (an error). Each forward
  therefore also returns the losses of the step's earlier parts (``earlier``), and the search starts from the
  whole step. Measured on a toy model under gloo: without this, "Expected to mark a variable ready only
  once"; with it, every gradient is the mean of the ranks' gradients, and the unused ones stay None.
  (``no_sync()`` on the earlier parts does not help: the search still starts from the last forward only.
  ``static_graph=True`` cannot express a set of used parameters that changes during a run: QT-DoG's onset.)
* ``forward_sync_buffers=False``: BatchNorm running statistics are global through ``sync_bn``, and the
  methods' per-rank statistics (EMAs, ADMM states) stay each rank's own, as documented per method. Buffers
  and parameters are still broadcast from rank 0 once, at construction (the same start on every rank).
* ``gradient_as_bucket_view=True``: the gradients live in DDP's communication buckets, one copy fewer.
* ``bucket_cap_mb``: DDP's default (25 MB), the size whose all-reduce overlaps the rest of the backward.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmarks.run.trainer_parts import TaskModel, revgrad


class PartOutputs(NamedTuple):
    """What the loss of one domain part is made from."""

    features: torch.Tensor
    logits: torch.Tensor | None  # None for an unlabelled part
    domain_logits: torch.Tensor | None  # None without a DANN domain head


class TrainingForward(nn.Module):
    """One domain part's forward as one module call: features, logits of a labelled part, and the DANN
    domain head's logits through gradient reversal. ``earlier`` is returned untouched (see the module
    docstring)."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labelled: bool, grl: float,
                earlier: tuple[torch.Tensor, ...]) -> tuple[PartOutputs, tuple[torch.Tensor, ...]]:
        features = self.model.net.features(x)
        logits = self.model.net.classify(features) if labelled else None
        head = self.model.domain_head
        domain_logits = head(revgrad(features, grl)) if head is not None else None
        return PartOutputs(features, logits, domain_logits), earlier


class DdpStepForward:
    """The DDP-wrapped ``TrainingForward`` of one rank, with the step's earlier part losses it carries."""

    def __init__(self, model: TaskModel, device: torch.device, resumed: bool) -> None:
        # A resumed run's ranks loaded the same weights from one checkpoint and each its own buffers (per-rank
        # statistics): no broadcast from rank 0 then.
        self.ddp = DistributedDataParallel(
            TrainingForward(model), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, forward_sync_buffers=False, gradient_as_bucket_view=True,
            init_sync=not resumed)
        self._earlier: list[torch.Tensor] = []

    def start_step(self) -> None:
        """Forget the previous step's parts (called before every training step)."""
        self._earlier = []

    def __call__(self, x: torch.Tensor, labelled: bool, grl: float) -> PartOutputs:
        outputs, _ = self.ddp(x, labelled, grl, tuple(self._earlier))
        return outputs

    def part_done(self, loss: torch.Tensor) -> None:
        """The part's whole loss (task, domain and extra terms), searched from by the step's later parts."""
        if loss.requires_grad:
            self._earlier.append(loss)
