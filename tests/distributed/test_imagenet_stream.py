"""Runs on a folder-streamed dataset (benchmarks/run/streamed.py) on a tiny fake ImageNet generated here
(4 classes of random-pixel JPEGs, trained at 32 px): the task holds paths only, the batch source streams
through ``ImageNetStream``, FP and LSQ runs train end to end through ``trainer.run`` without any split
decoded into memory, a run SIGKILLed after a step checkpoint resumes without decoding the batches it had
trained and ends with the uninterrupted run's weights, and two ranks train like one process."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmarks.data.imagenet as imagenet
import benchmarks.run.trainer as trainer
from benchmarks.run.distributed_run import spawn
from benchmarks.run.evaluation import calibration, per_class_accuracy
from benchmarks.run.run_model import build_run_model, load_finished_model
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.scoring import logits_on
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.streamed import (
    WORKERS_VARIABLE,
    StreamedBatches,
    build_streamed_task,
    loader_workers,
    streamed_task,
)
from tests.distributed.workers import quiet, train_all

TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 3
RECIPE = Recipe(epochs=2, batch_size=8, lr=0.05, schedule="cosine", weight_decay=1e-4)
KILL_EPOCH, KILL_POSITION = 1, 2  # in the second epoch, after its second step


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """``imagenet/train/<wnid>/`` and ``imagenet/val/<wnid>/``: 4 classes of random-pixel JPEGs."""
    root = tmp_path_factory.mktemp("data")
    imagenet.write_fake_imagenet(root, classes=4, train_per_class=TRAIN_PER_CLASS,
                                 val_per_class=VAL_PER_CLASS)
    return root


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    """Streams decode in this process (DataLoader workers are exercised by test_imagenet_folder.py)."""
    monkeypatch.setenv(WORKERS_VARIABLE, "0")


@pytest.fixture
def nothing_in_memory(monkeypatch):
    """The in-memory loaders raise: a streamed run must not reach them."""
    def refuse(*_, **__):
        raise AssertionError("a streamed run decoded a split into memory")

    monkeypatch.setattr(imagenet, "load_imagenet", refuse)
    monkeypatch.setattr(imagenet, "_decode", refuse)
    monkeypatch.setattr(trainer, "build_task", refuse)


def _spec(method: str = "fp", every: int | None = None, processes: int = 1) -> RunSpec:
    recipe = dataclasses.replace(RECIPE, checkpoint_every_steps=every, processes=processes)
    bits = {} if method == "fp" else {"w_bits": 4, "a_bits": 4, "fp_recipe": RECIPE}
    return RunSpec(task=TaskSpec("imagenet", val_fraction=0.2, image_size=32), arch="resnet20", method=method,
                   recipe=recipe, **bits)


def _batches(root: Path, spec: RunSpec | None = None) -> StreamedBatches:
    spec = spec or _spec()
    return StreamedBatches(build_streamed_task(spec, root), spec, torch.device("cpu"), channels_last=False)


def test_the_streamed_task_holds_paths_and_a_seeded_stratified_validation_split(fake_root):
    spec = _spec()
    task = build_streamed_task(spec, fake_root)
    train, val, test = task.sources[0].train, task.val, task.tests["imagenet"]
    assert not hasattr(train, "images") and not hasattr(test, "images")
    assert (len(train), len(val), len(test)) == (32, 8, 12)
    assert val.class_counts(4) == [2, 2, 2, 2] and task.train_class_counts == [8, 8, 8, 8]
    assert not set(train.paths.tolist()) & set(val.paths.tolist())  # type: ignore[attr-defined]
    assert (task.num_classes, task.size, task.primary_test) == (4, (32, 32), "imagenet")
    again = build_streamed_task(spec, fake_root).val
    other = build_streamed_task(dataclasses.replace(spec, seed=1), fake_root).val
    assert np.array_equal(again.paths, val.paths)  # type: ignore[attr-defined]
    assert not np.array_equal(other.paths, val.paths)  # type: ignore[attr-defined]


def test_image_size_is_refused_for_an_in_memory_dataset():
    spec = RunSpec(task=TaskSpec("optdigits", image_size=32), arch="dann_digits", method="fp", recipe=RECIPE)
    with pytest.raises(ValueError, match="invalid image_size 32 for 'optdigits'; valid: none"):
        streamed_task(spec, None)
    assert streamed_task(dataclasses.replace(spec, task=TaskSpec("optdigits")), None) is None


def test_skipped_steps_are_not_read_and_ranks_take_their_rows(fake_root, monkeypatch):
    whole = [parts[0] for parts in _batches(fake_root).training_parts(1, False)]
    assert len(whole) == 4 and whole[0].x.shape == (8, 3, 32, 32) and whole[0].domain == 0
    read: list[int] = []
    getitem = imagenet.SeededImages.__getitem__
    monkeypatch.setattr(imagenet.SeededImages, "__getitem__", lambda self, key: (read.append(key),
                                                                                  getitem(self, key))[1])
    resumed = list(_batches(fake_root).training_parts(1, False, skip=3))
    assert resumed[:3] == [[], [], []] and len(read) == 8  # only the last batch's 8 images were decoded
    assert torch.equal(resumed[3][0].x, whole[3].x) and torch.equal(resumed[3][0].y, whole[3].y)
    ranks = []
    for rank in range(2):
        batches = _batches(fake_root)
        batches.shard = (rank, 2)
        ranks.append([parts[0] for parts in batches.training_parts(1, False)])
    for a, b, one in zip(*ranks, whole):
        assert torch.equal(torch.cat([a.x, b.x]), one.x) and torch.equal(torch.cat([a.y, b.y]), one.y)


def test_evaluation_reads_the_split_in_order_or_the_ranks_rows(fake_root):
    batches = _batches(fake_root)
    test = batches.task.tests["imagenet"]
    seen = list(batches.evaluation(test))
    labels = torch.cat([y for _, y in seen])
    assert torch.equal(labels, test.labels) and seen[0][0].dtype == torch.float32
    assert torch.equal(seen[0][0], next(iter(batches.evaluation(test)))[0])  # no augmentation
    batches.shard = (1, 2)  # a data-parallel rank evaluates its rows of each batch (the ranks gather them)
    assert torch.equal(torch.cat([y for _, y in batches.evaluation(test)]), test.labels[6:])
    batches.shard = (0, 13)
    with pytest.raises(ValueError, match="invalid evaluation split of 12 images for 13 processes"):
        batches.evaluation(test)


def test_loader_workers_come_from_the_variable_or_the_slurm_task(monkeypatch):
    assert loader_workers() == 0
    monkeypatch.delenv(WORKERS_VARIABLE)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "10")
    assert loader_workers() == 9
    monkeypatch.setenv(WORKERS_VARIABLE, "two")
    with pytest.raises(ValueError, match=f"invalid {WORKERS_VARIABLE} 'two'; valid: an integer >= 0"):
        loader_workers()


def test_fp_and_lsq_runs_train_on_the_stream_end_to_end(fake_root, tmp_path, nothing_in_memory):
    fp, lsq = _spec("fp"), _spec("lsq")
    first = trainer.run(fp, tmp_path, data_root=str(fake_root), log=quiet, channels_last=False)
    result = trainer.run(lsq, tmp_path, data_root=str(fake_root), log=quiet, channels_last=False)
    for spec, record in ((fp, first), (lsq, result)):
        assert record is not None and RunDir.of(tmp_path, spec.run_id).state() is RunState.DONE
        assert record.task["input"] == [3, 32, 32] and record.task["num_classes"] == 4
        assert len(record.metrics.per_class_acc) == 4 and record.metrics.top1_last is not None
        assert record.metrics.val_best is not None and record.timings.steps == 8
        rows = RunDir.of(tmp_path, spec.run_id).read_metrics()
        assert len(rows) == 2 and all(np.isfinite(row["train_loss"]) for row in rows)
    quantized = [layer for layer in result.layer_report if layer.get("w_bits") == 4]
    assert quantized, "the LSQ run has no 4-bit layers"
    assert result.spec["init_from"] == fp.run_id


def _kill_mid_epoch(spec: RunSpec, output: Path, root: Path) -> None:
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from tests.distributed.workers import spawn_until_killed as f; "
            "f(eval(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))")
    env = {**os.environ, "QBENCH_DATA_ROOT": str(root), WORKERS_VARIABLE: "1"}
    subprocess.run([sys.executable, "-c", code, repr(spec.to_dict()), str(output), str(KILL_EPOCH),
                    str(KILL_POSITION)], capture_output=True, timeout=300, env=env)


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(fake_root, tmp_path,
                                                                              monkeypatch):
    interrupted, whole = _spec(every=1), _spec()
    _kill_mid_epoch(interrupted, tmp_path / "killed", fake_root)
    directory = RunDir.of(tmp_path / "killed", interrupted.run_id)
    assert directory.state() is RunState.INCOMPLETE, "the child was not killed mid-run"
    saved = torch.load(directory.checkpoint_path, weights_only=True)
    assert (saved["epoch"], saved["position"]) == (KILL_EPOCH, KILL_POSITION)

    train_keys: list[int] = []  # keys of epoch-2 training samples (key = epoch * 32 + index) read on resume
    getitem = imagenet.SeededImages.__getitem__
    monkeypatch.setattr(imagenet.SeededImages, "__getitem__",
                        lambda self, key: (train_keys.append(key) if key >= len(self) else None,
                                           getitem(self, key))[1])
    trainer.run(interrupted, tmp_path / "killed", data_root=str(fake_root), log=quiet)
    assert len(train_keys) == (4 - KILL_POSITION) * RECIPE.batch_size  # the trained batches were not read
    assert "after its step 2" in directory.log_path.read_text()
    trainer.run(whole, tmp_path / "whole", data_root=str(fake_root), log=quiet)
    a = torch.load(directory.final_path, weights_only=True)
    b = torch.load(RunDir.of(tmp_path / "whole", whole.run_id).final_path, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_streamed_ranks_train_like_one_process_and_score_rank_zeros_model(fake_root, tmp_path,
                                                                              monkeypatch):
    """One step: a ResNet-20 with BatchNorm over 4 images per rank amplifies float rounding from step to step
    (on the in-memory path as much as here). Each rank scores its shard of the validation and test splits;
    the recorded metrics are those of rank 0's model (final.pt) on the whole test split, scored in one
    process here."""
    monkeypatch.setenv("QBENCH_DATA_ROOT", str(fake_root))
    one_step = {"epochs": 1, "steps_per_epoch": 1}
    one, two = (dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **one_step))
                for spec in (_spec(), _spec(processes=2)))
    # per-rank BatchNorm statistics: the ranks' models differ, and the record must still be rank 0's
    unsynced = dataclasses.replace(two, recipe=dataclasses.replace(two.recipe, sync_bn=False))
    trainer.run(one, tmp_path, log=quiet)
    spawn(2, train_all, [two.to_dict(), unsynced.to_dict()], str(tmp_path))
    a = torch.load(RunDir.of(tmp_path, one.run_id).final_path, weights_only=True)
    b = torch.load(RunDir.of(tmp_path, two.run_id).final_path, weights_only=True)
    task = build_streamed_task(one, fake_root)
    start = build_run_model(one, task, torch.device("cpu"))[0].state_dict()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    moved = max((a[k] - start[k]).abs().max().item() for k in a if "conv" in k)
    assert worst < 5e-4 < moved / 10, f"two ranks are {worst} from one process, which moved {moved}"

    for spec in (two, unsynced):
        record = RunDir.of(tmp_path, spec.run_id).read_result()
        assert record is not None and record.metrics.val_best is not None
        model, method, context = load_finished_model(tmp_path, spec, task, torch.device("cpu"))
        loader = StreamedBatches(task, spec, torch.device("cpu"), channels_last=False)
        logits, labels = logits_on(model, method, context, loader, task.tests["imagenet"], 0)
        assert record.metrics.per_class_acc == per_class_accuracy(logits, labels, 4)
        assert record.metrics.nll == pytest.approx(calibration(logits, labels)["nll"], abs=1e-5)


def test_a_grid_task_sets_the_image_size():
    """A small-image ImageNet smoke grid is written in YAML like any other (task key ``image_size``)."""
    from benchmarks.matrix.expand import expand
    from benchmarks.matrix.grids import GridError, parse_grid

    def grid(size: object) -> dict:
        return {"name": "tiny-imagenet", "methods": ["fp"], "bits": ["4/4"], "seeds": [0],
                "tasks": [{"dataset": "imagenet", "archs": ["resnet18"], "recipe": "r", "image_size": size}],
                "recipes": {"r": {"quick": {"fp": {"epochs": 1}, "qat": {"epochs": 1}}}}}

    (spec,) = expand(parse_grid(grid(32)), "quick")
    assert spec.task.image_size == 32
    with pytest.raises(GridError, match="image_size"):
        parse_grid(grid(3))
