"""A run directory under faults: concurrent owners, planted or broken checkpoints, divergence, corrupt
records,
copied directories, and file modes a lab's group can read."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from benchmarks.run.divergence import Diverged
from benchmarks.run.rundir import RunClaimed, RunDir, RunState
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run

FP = Recipe(epochs=2, batch_size=64, lr=0.05, schedule="cosine", steps_per_epoch=4)


def _fp(**kw) -> RunSpec:
    return RunSpec(task=TaskSpec("optdigits"), arch="dann_digits", method="fp", recipe=FP, **kw)


def _quiet(_: str) -> None:
    pass


def _hold_claim(path: str, ready, release) -> None:
    with RunDir(path).claim():
        ready.set()
        release.wait(30)


def test_a_claimed_run_is_not_trained_twice(tmp_path):
    spec = _fp()
    directory = RunDir.of(tmp_path, spec.run_id)
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold_claim, args=(str(directory.path), ready, release))
    owner.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunClaimed, match=f"run {spec.run_id} is being trained"):
            run(spec, tmp_path, log=_quiet)
        assert not directory.failed_path.exists() and not directory.spec_path.exists()
    finally:
        release.set()
        owner.join(30)
    # the owner is gone (however it ended): its claim is free at once
    assert run(spec, tmp_path, log=_quiet) is not None and directory.state() is RunState.DONE


def test_a_dead_owners_claim_is_taken_over(tmp_path):
    directory = RunDir(tmp_path / "runs" / "x")
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold_claim, args=(str(directory.path), ready, release))
    owner.start()
    assert ready.wait(60)
    owner.kill()  # SIGKILL: no cleanup runs
    owner.join(30)
    with directory.claim():
        pass


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _train_one_epoch(tmp_path: Path) -> tuple[RunSpec, RunDir]:
    spec = _fp()
    assert run(spec, tmp_path, max_epochs=1, log=_quiet) is None
    directory = RunDir.of(tmp_path, spec.run_id)
    assert directory.checkpoint_path.exists()
    return spec, directory


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec, directory = _train_one_epoch(tmp_path)
    torch.save({"model": _RunsCode(), "epoch": 1}, directory.checkpoint_path)
    lines: list[str] = []
    result = run(spec, tmp_path, log=lines.append)
    assert not (tmp_path / "PWNED").exists()
    warning = [line for line in lines if "refused" in line]
    assert len(warning) == 1 and "would run code when unpickled" in warning[0] and "\n" not in warning[0]
    assert result is not None and directory.state() is RunState.DONE
    assert list(directory.path.glob("checkpoint.pt.unusable-*"))


def test_a_garbage_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path):
    spec, directory = _train_one_epoch(tmp_path)
    reference = run(_fp(), tmp_path / "reference", log=_quiet)
    directory.checkpoint_path.write_bytes(b"\x00not a checkpoint")
    lines: list[str] = []
    result = run(spec, tmp_path, log=lines.append)
    assert any("refused" in line and "restarts from its beginning" in line for line in lines)
    assert result.metrics.top1_last == reference.metrics.top1_last  # a clean restart, same result


def test_divergence_fails_the_run_at_once_with_its_reason(tmp_path):
    spec = _fp().with_(recipe=Recipe(epochs=3, batch_size=64, lr=1e12, schedule="constant",
                                     steps_per_epoch=4))
    with pytest.raises(Diverged, match=r"diverged at epoch 1 step \d"):
        run(spec, tmp_path, log=_quiet)
    directory = RunDir.of(tmp_path, spec.run_id)
    assert directory.state() is RunState.FAILED
    assert directory.read_failure()["error"].startswith("Diverged: diverged at epoch 1 step")
    assert directory.read_metrics() == []  # stopped inside the first epoch


def test_done_without_a_readable_result_is_corrupt(tmp_path):
    spec = _fp()
    run(spec, tmp_path, log=_quiet)
    directory = RunDir.of(tmp_path, spec.run_id)
    directory.result_path.write_text("{ torn")
    assert directory.state() is RunState.CORRUPT
    assert str(directory.result_path) in directory.result_problem()
    directory.result_path.write_text('{"metrics": "nope"}')
    assert "malformed key 'metrics'" in directory.result_problem()


def test_a_copied_run_directory_is_recognised(tmp_path):
    spec = _fp()
    run(spec, tmp_path, log=_quiet)
    original = RunDir.of(tmp_path, spec.run_id)
    assert original.identity_problem() is None
    copy = RunDir(tmp_path / "runs" / "0000000000000000")
    shutil.copytree(original.path, copy.path)
    assert "copied or renamed" in copy.identity_problem()


def test_records_follow_the_umask(tmp_path):
    spec = _fp()
    run(spec, tmp_path, log=_quiet)
    directory = RunDir.of(tmp_path, spec.run_id)
    expected = 0o666 & ~_current_umask()
    for path in (directory.spec_path, directory.result_path, directory.metrics_path, directory.final_path):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name
    assert not list(directory.path.glob(".*.tmp"))  # no temporary file left behind


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
