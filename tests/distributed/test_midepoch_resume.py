"""A run SIGKILLed mid-epoch resumes from its last step checkpoint and ends with the final weights of an
uninterrupted run, bit for bit on the CPU: in one process, and in two (gloo). The uninterrupted run writes no
step checkpoints, so this also shows that the checkpoint cadence (left out of the run id) changes nothing."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import pytest
import torch

from benchmarks.run.distributed_run import spawn
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run
from tests.distributed.workers import quiet, train_all

RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05, schedule="cosine", steps_per_epoch=4)
KILL_EPOCH, KILL_POSITION = 1, 2  # in the second epoch, after its second step


def _spec(processes: int, every: int | None, method: str = "fp") -> RunSpec:
    recipe = dataclasses.replace(RECIPE, processes=processes, checkpoint_every_steps=every)
    bits = 32 if method == "fp" else 4
    # FP with dropout on: the resumed run must also restore each rank's RNG stream. AlignQ (gradients
    # through DDP) keeps per-rank ADMM states that shape later steps: each rank must resume with its own, not
    # rank 0's (it failed while the start broadcast ran on resume too). EmaQ resumes on the other gradient
    # path (reduced at the optimizer step). Their FP parent trains one epoch in one process.
    parent = None if method == "fp" else dataclasses.replace(RECIPE, epochs=1)
    return RunSpec(task=TaskSpec("optdigits", test_subsample=100), arch="dann_digits", method=method,
                   recipe=recipe, w_bits=bits, a_bits=bits, fp_recipe=parent)


def _kill_mid_epoch(spec: RunSpec, output) -> None:
    # the test process's thread count: CPU float sums, and so the weights, depend on it
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from tests.distributed.workers import spawn_until_killed as f; "
            "f(eval(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))")
    subprocess.run([sys.executable, "-c", code, repr(spec.to_dict()), str(output), str(KILL_EPOCH),
                    str(KILL_POSITION)], capture_output=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("processes", "method"), [(1, "fp"), (2, "fp"), (2, "alignq"), (2, "emaq")])
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(processes, method, tmp_path):
    interrupted, whole = _spec(processes, 1, method), _spec(processes, None, method)
    assert interrupted.run_id == whole.run_id
    parent = interrupted.parent()
    if parent is not None:  # trained once, copied: both runs start from the same FP weights
        run(parent, tmp_path / "killed", log=quiet)
        shutil.copytree(tmp_path / "killed", tmp_path / "whole")
    _kill_mid_epoch(interrupted, tmp_path / "killed")
    directory = RunDir.of(tmp_path / "killed", interrupted.run_id)
    assert directory.state() is RunState.INCOMPLETE, "the child was not killed mid-run"
    saved = torch.load(directory.checkpoint_path, weights_only=True)
    assert (saved["epoch"], saved["position"]) == (KILL_EPOCH, KILL_POSITION)
    assert len(saved.get("per_rank", [None])) == processes

    outputs = [str(tmp_path / "killed"), str(tmp_path / "whole")]
    if processes == 1:
        for spec, output in zip((interrupted, whole), outputs):
            run(spec, output, log=quiet)
    else:  # both in one spawn: starting processes is most of a tiny run's time
        spawn(processes, train_all, [interrupted.to_dict(), whole.to_dict()], outputs)
    resumed = RunDir.of(tmp_path / "killed", interrupted.run_id)
    assert "after its step 2" in resumed.log_path.read_text()
    a = torch.load(resumed.final_path, weights_only=True)
    b = torch.load(RunDir.of(tmp_path / "whole", whole.run_id).final_path, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(resumed) == _rows(RunDir.of(tmp_path / "whole", whole.run_id))  # tallies restored too


def _rows(directory: RunDir) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in directory.read_metrics()]
