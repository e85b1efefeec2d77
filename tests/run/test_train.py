"""One run start to finish: records, resume after interruption, recorded failures, spec identity."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run

FP = Recipe(epochs=2, batch_size=64, lr=0.05, schedule="cosine", steps_per_epoch=6)
QAT = Recipe(epochs=3, batch_size=64, lr=0.01, schedule="multistep", milestones=(2,), steps_per_epoch=5)


def _spec(method="lsq", **kw) -> RunSpec:
    return RunSpec(task=TaskSpec("optdigits"), arch="dann_digits", method=method, recipe=QAT, w_bits=4,
                   a_bits=4,
                   fp_recipe=FP, **kw)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def fp_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run(_spec().parent(), out, log=_quiet)
    return out


def test_record_of_a_finished_run(fp_output):
    spec = _spec()
    result = run(spec, fp_output, grid="unit", log=_quiet).to_dict()
    directory = RunDir.of(fp_output, spec.run_id).path
    assert RunDir(directory).state() is RunState.DONE
    assert not (directory / "checkpoint.pt").exists() and (directory / "final.pt").exists()
    saved = json.loads((directory / "spec.json").read_text())
    assert saved["run_id"] == spec.run_id and saved["spec"]["init_from"] == spec.parent().run_id
    m = result["metrics"]
    assert 0 <= m["ece"] <= 1 and m["nll"] > 0 and len(m["per_class_acc"]) == 10
    assert m["top1_best"] >= m["top1_last"] and 1 <= m["best_epoch"] <= 3
    assert m["top1_val_selected"] is not None and set(m["per_domain_acc"]) == {"optdigits"}
    assert sum(m["reliability"]["bin_count"]) == 1797  # the whole optdigits test split
    assert result["timings"]["epochs"] == 3 and result["timings"]["steps"] == 15
    assert result["environment"]["torch"] == torch.__version__
    assert result["layer_report"][0]["w_bits"] == 8 and result["layer_report"][1]["w_bits"] == 4
    assert len(RunDir(directory).read_metrics()) == 3
    assert "epoch 3/3" in RunDir(directory).log_path.read_text()  # the run's own log, beside its records
    assert m["top1_last"] > 30  # a real digits model after 15 steps, far above 10 % chance


def test_interrupted_run_resumes_to_identical_result(fp_output, tmp_path):
    spec = _spec(seed=0)
    whole = run(spec, fp_output, log=_quiet).to_dict()
    other = tmp_path / "interrupted"
    (other / "runs").mkdir(parents=True)
    parent = RunDir.of(fp_output, spec.parent().run_id).path
    import shutil

    shutil.copytree(parent, RunDir.of(other, spec.parent().run_id).path)
    assert run(spec, other, max_epochs=1, log=_quiet) is None
    assert RunDir.of(other, spec.run_id).state() is RunState.INCOMPLETE
    assert run(spec, other, max_epochs=1, log=_quiet) is None
    resumed = run(spec, other, log=_quiet).to_dict()
    for key in ("top1_last", "top1_best", "nll", "ece", "per_class_acc", "top1_val_selected"):
        assert resumed["metrics"][key] == whole["metrics"][key], key
    a = torch.load(RunDir.of(fp_output, spec.run_id).path / "final.pt")
    b = torch.load(RunDir.of(other, spec.run_id).path / "final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_stops_at_a_step_boundary_and_the_run_resumes(fp_output, tmp_path):
    """What a SLURM requeue or preemption does to a worker: SIGTERM after epoch 1, resumed by the next job."""
    import os
    import shutil
    import signal

    from benchmarks.run.termination import Terminated, stop_on_sigterm

    spec = _spec(seed=0)
    whole = run(spec, fp_output, log=_quiet).to_dict()
    other = tmp_path / "terminated"
    shutil.copytree(RunDir.of(fp_output, spec.parent().run_id).path, RunDir.of(other,
                                                                               spec.parent().run_id).path)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert stop_on_sigterm()
        with pytest.raises(Terminated, match="before step 6 \\(epoch 2\\)"):
            run(spec, other, log=_quiet, on_epoch=lambda row: os.kill(os.getpid(), signal.SIGTERM))
        directory = RunDir.of(other, spec.run_id).path
        assert json.loads((directory / "failed.json").read_text())["error"].startswith("Terminated")
        assert len(RunDir(directory).read_metrics()) == 1 and (directory / "checkpoint.pt").exists()
        assert RunDir(directory).state() is RunState.INTERRUPTED  # resumable, not broken
        stop_on_sigterm()  # the requeued job: a new worker, its flag clear
        resumed = run(spec, other, log=_quiet).to_dict()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert RunDir(directory).state() is RunState.DONE
    assert resumed["metrics"]["top1_last"] == whole["metrics"]["top1_last"]


def test_failure_is_recorded_not_swallowed(tmp_path):
    spec = _spec()  # its FP parent was never trained in this output
    with pytest.raises(FileNotFoundError, match="FP parent run"):
        run(spec, tmp_path, log=_quiet)
    directory = RunDir.of(tmp_path, spec.run_id).path
    failure = json.loads((directory / "failed.json").read_text())
    assert failure["error"].startswith("FileNotFoundError") and "Traceback" in failure["traceback"]
    assert RunDir(directory).state() is RunState.FAILED


def test_run_identity():
    spec = _spec()
    assert spec.run_id == _spec().run_id
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).run_id == spec.run_id
    assert spec.with_(seed=1).run_id != spec.run_id
    assert spec.with_(w_bits=2).run_id != spec.run_id
    assert spec.parent().method == "fp" and spec.parent().parent() is None
    with pytest.raises(ValueError, match="valid: standard, dann, source_only"):
        TaskSpec("mnist", protocol="nope")
    with pytest.raises(ValueError, match="valid: multistep, cosine, constant, dann"):
        Recipe(epochs=1, schedule="linear")


def test_a_finished_run_rebuilt_from_its_records_scores_as_recorded(fp_output):
    """PTQ, test-time adaptation and ensembles start from ``load_finished_model``: the same model."""
    from benchmarks.data.tasks import build_task
    from benchmarks.run.batches import Batches
    from benchmarks.run.evaluation import accuracy
    from benchmarks.run.run_model import load_finished_model
    from benchmarks.run.scoring import logits_on

    spec = _spec()
    recorded = run(spec, fp_output, log=_quiet).metrics.top1_last
    task = build_task(spec.task.dataset, spec.task.target, seed=spec.seed,
                      val_fraction=spec.task.val_fraction)
    device = torch.device("cpu")
    model, method, context = load_finished_model(fp_output, spec, task, device)
    loader = Batches(task, spec, device, channels_last=False)
    logits = logits_on(model, method, context, loader, task.tests[task.primary_test],
                       loader.domain_id(task.primary_test))
    assert accuracy(*logits) == pytest.approx(recorded, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="not done"):
        load_finished_model(fp_output, spec.with_(seed=99), task, device)
