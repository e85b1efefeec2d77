"""The calibration set of a post-training quantization run: images drawn from the *training* split only.

``draw_calibration`` reads ``task.sources[0].train`` and nothing else of the task (the validation images were
carved out of the training data before, and the test splits are never touched), picks ``size`` images
without replacement with a generator seeded by the run seed, and normalises them as the evaluation does
(no augmentation).
"""
from __future__ import annotations

import torch

from benchmarks.data.base import ImageTensors, TaskData
from benchmarks.data.batches import normalise

CALIBRATION_STREAM = 104729  # offsets the run seed so the draw is independent of the training streams


def calibration_indices(train_size: int, size: int, seed: int) -> torch.Tensor:
    """``size`` distinct indices into the training split (all of it when it is smaller), seeded."""
    generator = torch.Generator().manual_seed(seed * 7 + CALIBRATION_STREAM)
    return torch.randperm(train_size, generator=generator)[:size]


def draw_calibration(task: TaskData, size: int, seed: int,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, ImageTensors]:
    """(normalised float images on ``device``, the drawn uint8 split), from the first source's training
    split."""
    train = task.sources[0].train
    drawn = train.subset(calibration_indices(len(train), size, seed))
    x = normalise(drawn.images.to(device), task.mean, task.std)
    return x, drawn
