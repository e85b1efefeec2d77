"""A PTQ run end to end through ``run_one.py`` on real UCI optdigits: FP parent, then BRECQ W2/A4; a done run
with the usual records, read by analysis, whose final.pt ``load_finished_model`` rebuilds exactly, and whose
reconstruction only ever saw training images."""
from __future__ import annotations

import json

import pytest
import torch

from analysis.collect import collect_runs
from benchmarks.data.batches import normalise
from benchmarks.data.tasks import build_task
from benchmarks.run.run_model import load_finished_model
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec
from benchmarks.run_one import main
from methods.ptq import PtqMethod
from methods.ptq.units import weight_quantizers

pytestmark = pytest.mark.slow


def test_ptq_run_end_to_end(tmp_path, monkeypatch, capsys):
    seen: list[torch.Tensor] = []
    original = PtqMethod.reconstruct

    def spying(self, qnet, fpnet, calib, seed, log=print):
        seen.append(calib.clone())
        return original(self, qnet, fpnet, calib, seed, log)

    monkeypatch.setattr(PtqMethod, "reconstruct", spying)
    args = ["--dataset", "optdigits", "--arch", "dann_digits", "--bits", "2/4", "--fp-epochs", "1",
            "--steps-per-epoch", "10", "--batch-size", "64", "--output", str(tmp_path), "--device", "cpu"]
    assert main([*args, "--method", "brecq", "--hparam", "iters=15", "--hparam", "iters_act=5",
                 "--hparam", "calib_size=128"]) == 0
    printed = json.loads("{" + capsys.readouterr().out.rsplit("{", 1)[-1])
    runs = [RunDir(p) for p in (tmp_path / "runs").iterdir()]
    ptq = [r for r in runs if r.read_spec()["spec"]["method"] == "brecq"]
    assert len(ptq) == 1 and ptq[0].state() is RunState.DONE
    directory = ptq[0]
    assert directory.path.name == printed["run_id"]
    assert directory.final_path.exists() and (directory.path / "log.txt").exists()
    spec = RunSpec.from_dict(directory.read_spec()["spec"])
    result = directory.read_result()
    assert result.metrics.top1_last is not None and result.timings.steps == 5 * (15 + 5)
    assert "calibration images from the training split" in (directory.path / "log.txt").read_text()

    # the reconstruction saw 128 training images, each one a row of the training split
    task = build_task("optdigits", None, seed=0, val_fraction=spec.task.val_fraction)
    train = normalise(task.sources[0].train.images, task.mean, task.std).flatten(1)
    assert len(seen) == 1 and seen[0].shape[0] == 128
    assert all(bool((train == row).all(1).any()) for row in seen[0].flatten(1))

    # analysis reads it like any run
    frame, _ = collect_runs(tmp_path)
    assert set(frame["method"]) >= {"fp", "brecq"}

    # final.pt rebuilds the quantized model with its hardened rounding: same test accuracy
    model, _, _ = load_finished_model(tmp_path, spec, task, torch.device("cpu"))
    assert all(q.mode == 2 for q in weight_quantizers(model.net))
    test = task.tests[task.primary_test]
    with torch.no_grad():
        logits = model.net(normalise(test.images, task.mean, task.std))
    accuracy = 100.0 * float((logits.argmax(1) == test.labels).float().mean())
    assert accuracy == pytest.approx(result.metrics.top1_last, abs=1e-6)
