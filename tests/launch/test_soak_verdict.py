"""The soak's bookkeeping: an epoch logged twice is a duplicate training; a failure's reason leaves out the
loss value (NaN or inf: where the overflow lands is not the point)."""
from __future__ import annotations

from benchmarks.launch.soak.grid import LONG, SHORT
from benchmarks.launch.soak.verdict import epoch_counts, failure_reason
from benchmarks.run.rundir import RunDir


def test_epoch_counts_find_an_epoch_trained_twice(tmp_path):
    directory = RunDir(tmp_path / "runs" / "abc")
    directory.path.mkdir(parents=True)
    for line in ("[abc] lsq W4/A4 epoch 1/2 loss 1.0 train 50.00 test 60.00",
                 "[abc] interrupted: Terminated: SIGTERM received",
                 "[abc] resuming after epoch 1",
                 "[abc] lsq W4/A4 epoch 2/2 loss 0.9 train 55.00 test 61.00"):
        directory.append_log(line)
    assert epoch_counts(directory) == {1: 1, 2: 1}
    directory.append_log("[abc] lsq W4/A4 epoch 2/2 loss 0.9 train 55.00 test 61.00")
    assert epoch_counts(directory)[2] == 2


def test_failure_reason_drops_the_loss_value(tmp_path):
    directory = RunDir(tmp_path / "runs" / "abc")
    directory.write_failure("Diverged: diverged at epoch 1 step 7 (loss nan)", "trace")
    assert failure_reason(directory) == "Diverged: diverged at epoch 1 step 7"


def test_grid_sizes():
    assert (SHORT.runs, LONG.runs) == (16, 61)
