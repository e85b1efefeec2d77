"""Scoring a model during and after training: each epoch's metrics row and the final result record."""
from __future__ import annotations

import time
from typing import Any, cast

import torch

from benchmarks.data.base import TaskData
from benchmarks.run.environment import environment
from benchmarks.run.evaluation import (
    HEAD_MIN,
    TAIL_MAX,
    accuracy,
    calibration,
    collect_logits,
    head_medium_tail,
    per_class_accuracy,
)
from benchmarks.run.result import Metrics, ResultRecord, Timings
from benchmarks.run.spec import RunSpec
from benchmarks.run.streamed import BatchSource
from benchmarks.run.trainer_parts import TaskModel
from methods import BatchContext, layer_report


def logits_on(model: TaskModel, method, context: BatchContext, loader: BatchSource, split,
              domain: int | None):
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        context.set_batch(None, domain)
        return method.predict(model.net(x), context)

    with loader.as_rank_zero(model):  # a streamed data-parallel run scores each rank's shard (streamed.py)
        logits, labels = collect_logits(loader.evaluation(split), forward)
    return loader.gathered(logits, labels, split)


def epoch_row(spec: RunSpec, epoch: int, model, method, context, loader: BatchSource, task: TaskData,
               train_loss: float, train_acc: float, optimizer) -> dict[str, Any]:
    by_domain = {name: accuracy(*logits_on(model, method, context, loader, split, loader.domain_id(name)))
                 for name, split in task.tests.items()}
    val_acc = accuracy(*logits_on(model, method, context, loader, task.val, 0)) if len(task.val) else None
    return {"run_id": spec.run_id, "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "val_acc": val_acc, "test_acc": by_domain.get(task.primary_test), "test_acc_by_domain": by_domain,
            "lr": optimizer.param_groups[0]["lr"], "time_s": time.time()}


def final_result(spec: RunSpec, grid: str | None, model: TaskModel, method, context: BatchContext,
                 loader: BatchSource, task: TaskData, state: dict[str, Any], device: torch.device,
                 wall_start: float) -> ResultRecord:
    history = state["history"]
    timings = Timings(wall_s=time.time() - wall_start, train_s=state["train_s"], eval_s=state["eval_s"],
                      epochs=state["epoch"], steps=state["step"])
    common = {"run_id": spec.run_id, "grid": grid, "spec": spec.to_dict(), "timings": timings,
              "resolved_hparams": method.hparams, "layer_report": layer_report(model.net),
              "environment": environment(device)}
    if not task.tests:  # a tuning run: validation metrics only
        return ResultRecord(metrics=Metrics(val_last=history[-1]["val_acc"],
                                            val_best=max(r["val_acc"] for r in history)), **common)
    logits, labels = logits_on(model, method, context, loader, task.tests[task.primary_test],
                               loader.domain_id(task.primary_test))
    per_class = per_class_accuracy(logits, labels, task.num_classes)
    best = max(history, key=lambda r: r["test_acc"])
    with_val = [r for r in history if r["val_acc"] is not None]
    selected = max(with_val, key=lambda r: r["val_acc"]) if with_val else None
    per_domain = history[-1]["test_acc_by_domain"]
    metrics = Metrics(
        top1_last=history[-1]["test_acc"], top1_best=best["test_acc"], best_epoch=best["epoch"],
        top1_val_selected=selected["test_acc"] if selected else None,
        val_best=selected["val_acc"] if selected else None,
        per_class_acc=per_class, **cast(dict[str, Any], head_medium_tail(per_class, task.train_class_counts)),
        per_domain_acc=per_domain, worst_domain_acc=min(per_domain.values()),
        **calibration(logits, labels),
    )
    return ResultRecord(
        metrics=metrics, hmt_thresholds={"head_min": HEAD_MIN, "tail_max": TAIL_MAX},
        train_class_counts=task.train_class_counts,
        task={"name": task.name, "primary_test": task.primary_test, "domains": task.domain_names,
              "num_classes": task.num_classes, "input": [task.channels, *task.size]},
        **common)
