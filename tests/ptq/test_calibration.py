"""The calibration set comes from the training split only, seeded: PTQ never reads the test split."""
from __future__ import annotations

import torch

from benchmarks.data.tasks import build_task
from benchmarks.run.calibration import calibration_indices, draw_calibration


class _Untouchable:
    """A split that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_calibration_reads_only_the_training_split():
    task = build_task("optdigits", None, seed=0, val_fraction=0.1)
    train = task.sources[0].train
    task.tests = {name: _Untouchable() for name in task.tests}  # type: ignore[misc]
    task.val = _Untouchable()  # type: ignore[assignment]
    x, drawn = draw_calibration(task, 256, seed=3)
    assert x.shape == (256, task.channels, *task.size) and x.dtype == torch.float32
    index = calibration_indices(len(train), 256, seed=3)
    assert torch.equal(drawn.images, train.images[index]) and torch.equal(drawn.labels, train.labels[index])
    assert len(set(index.tolist())) == 256  # without replacement


def test_calibration_draw_is_seeded():
    assert torch.equal(calibration_indices(1000, 64, 0), calibration_indices(1000, 64, 0))
    assert not torch.equal(calibration_indices(1000, 64, 0), calibration_indices(1000, 64, 1))
    assert len(calibration_indices(50, 1024, 0)) == 50  # a small training split is used whole
