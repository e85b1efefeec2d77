"""Evaluation: accuracy, per-class and head/medium/tail accuracy, calibration (15-bin ECE, NLL)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

ECE_BINS = 15
HEAD_MIN = 100  # head: more than 100 training images (Cao et al./Liu et al. many-shot)
TAIL_MAX = 20  # tail: fewer than 20 training images (few-shot); medium in between


def collect_logits(batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``forward`` over all batches in inference mode; returns (logits float32 on CPU, labels)."""
    logits, labels = [], []
    with torch.inference_mode():
        for x, y in batches:
            logits.append(forward(x).float().cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    correct = torch.bincount(labels[logits.argmax(1) == labels], minlength=num_classes).float()
    total = torch.bincount(labels, minlength=num_classes).float()
    return [None if t == 0 else 100.0 * c.item() / t.item() for c, t in zip(correct, total)]


def head_medium_tail(per_class: list[float | None], train_counts: list[int]) -> dict[str, float | None]:
    groups: dict[str, list[float]] = {"head_acc": [], "medium_acc": [], "tail_acc": []}
    for acc, n in zip(per_class, train_counts):
        if acc is None:
            continue
        key = "head_acc" if n > HEAD_MIN else "tail_acc" if n < TAIL_MAX else "medium_acc"
        groups[key].append(acc)
    return {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error (L1, equal-width confidence bins), NLL, and the reliability diagram."""
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    index = torch.clamp((confidence * bins).long(), max=bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    conf_sum = torch.zeros(bins).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins).index_add_(0, index, correct)
    safe = count.clamp_min(1)
    ece = (torch.abs(acc_sum - conf_sum).sum() / max(len(labels), 1)).item()
    return {
        "ece": ece,
        "nll": F.cross_entropy(logits, labels).item(),
        "reliability": {
            "bin_confidence": (conf_sum / safe).tolist(),
            "bin_accuracy": (acc_sum / safe).tolist(),  # fractions, like bin_confidence
            "bin_count": count.long().tolist(),
        },
    }
