"""Ensembles of finished runs, evaluated from the members' saved models: EoQ (QT-DoG's Ensemble of Quantized
models, K = 5 independently seeded QT-DoG runs, softmax probabilities averaged).

An ensemble is a cell of a grid like any method (``methods: [..., eoq]``): ``expand`` adds its members as
ordinary runs of the member method, all on the same trial's domains (``TaskSpec.trial``) with seeds
``trial + 1000·k`` (member 0 is the member method's own run of that trial), each trained from its own FP
parent. Once every member is done, ``evaluate_ensemble`` rebuilds each member's network
(``load_finished_model``), averages the members' softmax on every test split and writes the ensemble's run
directory (spec, one metrics row, result, ``done``), so collection, the DomainBed table and MLflow read it as
a run. The ensemble's spec is the first member's with ``method`` = the ensemble name and the member run ids
as ``hparams``: its identity is the set of members.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks.data.base import TaskData
from benchmarks.data.tasks import build_task
from benchmarks.run.batches import Batches
from benchmarks.run.evaluation import accuracy
from benchmarks.run.result import Metrics, ResultRecord, Timings
from benchmarks.run.run_model import load_finished_model
from benchmarks.run.rundir import RunDir
from benchmarks.run.scoring import logits_on
from benchmarks.run.spec import SCHEMA_VERSION, RunSpec
from benchmarks.run.trainer import _subsample as subsample


@dataclass(frozen=True)
class EnsembleKind:
    member_method: str
    size: int


ENSEMBLES: dict[str, EnsembleKind] = {"eoq": EnsembleKind("qtdog", 5)}


def is_ensemble(method: str) -> bool:
    return method in ENSEMBLES


def member_specs(spec: RunSpec, size: int) -> list[RunSpec]:
    """The members of the ensemble cell ``spec`` (a run of the member method; its seed is the trial)."""
    trial = spec.task.trial if spec.task.trial is not None else spec.seed
    pinned = replace(spec.task, trial=trial)
    return [spec] + [spec.with_(task=pinned, seed=trial + 1000 * k) for k in range(1, size)]


def ensemble_cells(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Group member runs (of one member method) into ensembles: same task, trial, arch, bits, recipe and
    hyper-parameters; members in seed order."""
    cells: dict[str, list[RunSpec]] = {}
    for spec in specs:
        trial = spec.task.trial if spec.task.trial is not None else spec.seed
        key = spec.with_(seed=-1, task=replace(spec.task, trial=trial)).run_id
        cells.setdefault(key, []).append(spec)
    return [sorted(members, key=lambda s: s.seed) for members in cells.values()]


def ensemble_spec(name: str, members: list[RunSpec]) -> RunSpec:
    return members[0].with_(method=name, hparams={"members": [m.run_id for m in members]})


def member_probabilities(output: Path, members: list[RunSpec], task: TaskData,
                         device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Split name -> (mean softmax over members (N, classes), labels)."""
    splits = {**task.tests, **({"val": task.val} if len(task.val) else {})}
    sums: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    for member in members:
        model, method, context = load_finished_model(output, member, task, device)
        loader = Batches(task, member, device, channels_last=False)
        for name, split in splits.items():
            logits, y = logits_on(model, method, context, loader, split, loader.domain_id(name))
            probs = torch.softmax(logits.float(), dim=1)
            sums[name] = sums[name] + probs if name in sums else probs
            labels[name] = y
    return {name: (sums[name] / len(members), labels[name]) for name in sums}


def evaluate_ensemble(output: Path, name: str, members: list[RunSpec], *, data_root: str | None = None,
                      device: str = "cpu", grid: str | None = None) -> ResultRecord:
    """Evaluate the ensemble ``name`` of the finished ``members`` into its own run directory (reused when
    done)."""
    spec = ensemble_spec(name, members)
    directory = RunDir.of(output, spec.run_id)
    if directory.is_done():
        result = directory.read_result()
        if result is not None:
            return result
    first = members[0]
    task = build_task(first.task.dataset, first.task.target, root=data_root, seed=first.seed,
                      val_fraction=first.task.val_fraction, trial=first.task.trial)
    if first.task.test_subsample:  # the members were scored on the same fixed subsets
        task.tests = {n: subsample(split, first.task.test_subsample) for n, split in task.tests.items()}
    probs = member_probabilities(Path(output), members, task, torch.device(device))
    by_split = {split: accuracy(p, y) for split, (p, y) in probs.items()}
    by_domain = {split: acc for split, acc in by_split.items() if split != "val"}
    test_acc = by_domain[task.primary_test]
    row = {"run_id": spec.run_id, "epoch": 1, "train_loss": None, "train_acc": None,
           "val_acc": by_split.get("val"), "test_acc": test_acc,
           "test_acc_by_domain": by_domain, "lr": None}
    directory.write_spec({"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "grid": grid,
                          "spec": spec.to_dict(), "provenance": {"ensemble": name, "members": len(members)}})
    directory.write_metrics([row])
    result = ResultRecord(
        run_id=spec.run_id, grid=grid, spec=spec.to_dict(), timings=Timings(epochs=1, steps=0),
        metrics=Metrics(top1_last=test_acc, top1_best=test_acc, best_epoch=1, top1_val_selected=test_acc,
                        val_best=by_split.get("val"), per_domain_acc=by_domain,
                        worst_domain_acc=min(by_domain.values())),
        resolved_hparams={"members": [m.run_id for m in members], "combine": "mean softmax"},
        task={"name": task.name, "primary_test": task.primary_test, "domains": task.domain_names,
              "num_classes": task.num_classes, "input": [task.channels, *task.size]})
    directory.write_result(result)
    directory.mark_done()
    return result
