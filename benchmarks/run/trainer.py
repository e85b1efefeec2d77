"""One run, start to finish: FP training or QAT fine-tuning from the FP parent, resumable at epoch boundaries.

Determinism: the model is initialised from the run seed, each epoch's batch order and augmentation come
from generators seeded by (seed, epoch, domain), and the global RNG (dropout) is saved with every
checkpoint, so a run interrupted after any epoch and started again ends with the same weights and metrics
as an uninterrupted one (on CPU; CUDA kernels are not all deterministic).
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from benchmarks.run import rundir as records
from benchmarks.data.base import TaskData
from benchmarks.data.batches import iterate_batches, num_batches
from benchmarks.data.splits import stratified_split
from benchmarks.data.tasks import build_task
from benchmarks.run.environment import environment
from benchmarks.run.evaluation import (HEAD_MIN, TAIL_MAX, accuracy, calibration, collect_logits, head_medium_tail,
                                 per_class_accuracy)
from benchmarks.models import build_model
from benchmarks.run.schedules import grl_coefficient, lr_factor
from benchmarks.run.spec import SCHEMA_VERSION, RunSpec
from benchmarks.run.termination import raise_if_terminated
from benchmarks.run.trainer_parts import TaskModel, make_loss_fn, make_optimizer, pick_device
from methods import BatchContext, DomainBatch, LayerPolicy, calibrate, get_method, layer_report, prepare

EVAL_BATCH = 1000
Log = Callable[[str], None]


def run(spec: RunSpec, output: Path, *, grid: str | None = None, data_root: str | None = None,
        device: str = "auto", channels_last: bool = True, max_epochs: int | None = None,
        log: Log = print, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        eval_test: bool = True, provenance: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Train ``spec`` into ``<output>/runs/<run_id>``; returns the result, or None if stopped early.

    A finished run is returned as is. An interrupted one resumes from its checkpoint. ``max_epochs`` stops
    after that many epochs in this call (for time-sliced jobs and tests). ``on_epoch(row)`` sees each epoch's
    metrics row after it is saved (a tuner reports it and may raise to prune). ``eval_test=False`` never
    evaluates a test split (tuning selects on the validation split only). ``provenance`` (e.g. the Optuna
    study that tuned the hyper-parameters) is stored in spec.json. Failures are recorded in ``failed.json``
    and re-raised.
    """
    directory = records.run_dir(output, spec.run_id)
    if (directory / "done").exists():
        return records.read_json(directory / "result.json")
    _write_spec(directory, spec, grid, provenance)
    try:
        result = _train(spec, directory, Path(output), grid, data_root, pick_device(device), channels_last,
                        max_epochs, log, on_epoch, eval_test)
    except BaseException as err:
        records.atomic_write_json(directory / "failed.json", {
            "run_id": spec.run_id, "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(), "time": time.time()})
        raise
    finally:  # this process no longer works on the run (a SIGKILL is detected from the dead pid instead)
        records.write_heartbeat(directory, finished=True)
    return result


def _write_spec(directory: Path, spec: RunSpec, grid: str | None, provenance: dict[str, Any] | None) -> None:
    path = directory / "spec.json"
    if path.exists():
        existing = records.read_json(path)
        if existing.get("run_id") != spec.run_id:
            raise ValueError(f"{path} belongs to run {existing.get('run_id')}, not {spec.run_id}")
        return
    records.atomic_write_json(path, {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "grid": grid,
                                     "spec": spec.to_dict(), "provenance": provenance})


def _train(spec: RunSpec, directory: Path, output: Path, grid: str | None, data_root: str | None,
           device: torch.device, channels_last: bool, max_epochs: int | None, log: Log,
           on_epoch: Callable[[dict[str, Any]], None] | None, eval_test: bool) -> dict[str, Any] | None:
    wall_start = time.time()
    records.write_heartbeat(directory)
    (directory / "failed.json").unlink(missing_ok=True)
    task = build_task(spec.task.dataset, spec.task.target, root=data_root, seed=spec.seed,
                      val_fraction=spec.task.val_fraction)
    if not eval_test:
        task.tests = {}  # tuning: the test splits are dropped before anything could read them
    elif spec.task.test_subsample:
        task.tests = {name: _subsample(split, spec.task.test_subsample) for name, split in task.tests.items()}
    method = get_method(spec.method, **spec.hparams)
    torch.manual_seed(spec.seed)
    use_targets = spec.task.protocol == "dann"
    net = build_model(spec.arch, task.num_classes, in_channels=task.channels, input_size=task.size,
                      **spec.arch_options)
    head = net.make_domain_head(len(task.sources) + len(task.targets)) if use_targets else None
    model = TaskModel(net, head).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    parent = spec.parent()
    if parent is not None:
        parent_final = records.run_dir(output, parent.run_id) / "final.pt"
        if not (records.run_dir(output, parent.run_id) / "done").exists():
            raise FileNotFoundError(f"FP parent run {parent.run_id} is not done (expected {parent_final})")
        model.load_state_dict(torch.load(parent_final, map_location=device, weights_only=True))
    counts = torch.tensor(task.train_class_counts, dtype=torch.float32)
    context = BatchContext(class_prior=(counts / counts.sum()).to(device), class_counts=counts.to(device),
                           num_domains=len(task.sources) + (len(task.targets) if use_targets else 0))
    policy = LayerPolicy(**spec.layer_policy) if spec.layer_policy else None
    prepare(model.net, method, spec.w_bits, spec.a_bits, policy, context)
    model.to(device)

    loader = _Batches(task, spec, device, channels_last)
    steps = min(loader.steps_per_epoch(), spec.recipe.steps_per_epoch or 10**9)
    optimizer = make_optimizer(model, spec.recipe)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    total_steps = steps * spec.recipe.epochs
    state = {"epoch": 0, "step": 0, "history": [], "train_s": 0.0, "eval_s": 0.0}
    checkpoint = directory / "checkpoint.pt"
    if checkpoint.exists():
        state = _load_checkpoint(checkpoint, model, optimizer, method, device)
        log(f"[{spec.run_id}] resuming after epoch {state['epoch']}")
    else:
        calibrate(model.net, next(loader.epoch(0, 0))[0])

    tally: dict[str, Any] = {}  # the running accuracy and GRL coefficient of the current epoch
    loss_fn = make_loss_fn(model, method, context, device, spec.recipe.amp, tally)

    epochs_this_call = 0
    while state["epoch"] < spec.recipe.epochs:
        if max_epochs is not None and epochs_this_call >= max_epochs:
            return None
        epoch = state["epoch"]
        model.train()
        start = time.time()
        tally.update(correct=torch.zeros((), device=device), seen=0, grl=0.0)
        loss_sum = torch.zeros((), device=device)
        for index, parts in enumerate(loader.training_parts(epoch, use_targets)):
            if index >= steps:
                break
            raise_if_terminated(f"before step {state['step'] + 1} (epoch {epoch + 1})")
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * lr_factor(spec.recipe, state["step"], steps)
            tally["grl"] = grl_coefficient(state["step"], total_steps)
            loss_sum += method.training_step(model, optimizer, parts, loss_fn)
            state["step"] += 1
        state["train_s"] += time.time() - start
        start = time.time()
        row = _epoch_row(spec, epoch + 1, model, method, context, loader, task, loss_sum.item() / steps,
                         100.0 * tally["correct"].item() / max(1, tally["seen"]), optimizer)
        state["eval_s"] += time.time() - start
        state["history"].append(row)
        state["epoch"] = epoch + 1
        epochs_this_call += 1
        _save_checkpoint(checkpoint, state, model, optimizer, method)
        records.write_metrics(directory, state["history"])
        records.write_heartbeat(directory)
        shown = "test" if eval_test else "val"
        log(f"[{spec.run_id}] {spec.method} {spec.bits_label} epoch {epoch + 1}/{spec.recipe.epochs} "
            f"loss {row['train_loss']:.4f} train {row['train_acc']:.2f} {shown} {row[shown + '_acc']:.2f}")
        if on_epoch is not None:
            on_epoch(row)
    result = _final_result(spec, grid, model, method, context, loader, task, state, device, wall_start)
    torch.save(model.state_dict(), directory / "final.pt")
    records.atomic_write_json(directory / "result.json", result)
    records.mark_done(directory)
    checkpoint.unlink(missing_ok=True)
    return result


def _subsample(split, limit: int):
    """A fixed class-stratified subset (seed 0 for every run, so all runs see the same images)."""
    if len(split) <= limit:
        return split
    return stratified_split(split, limit / len(split), seed=0)[1]


class _Batches:
    """Seeded per-epoch batch streams for every domain of a task."""

    def __init__(self, task: TaskData, spec: RunSpec, device: torch.device, channels_last: bool) -> None:
        self.task, self.spec, self.device, self.channels_last = task, spec, device, channels_last

    def _stream(self, split, epoch: int, domain: int, cycle: int = 0, shuffle: bool = True, augment: bool = True,
                drop_last: bool = True, batch_size: int | None = None):
        generator = torch.Generator().manual_seed(((self.spec.seed * 1009 + epoch) * 31 + domain) * 7 + cycle)
        return iterate_batches(split, batch_size or self.spec.recipe.batch_size, mean=self.task.mean,
                               std=self.task.std, augment=self.task.augment if augment else "none",
                               shuffle=shuffle, drop_last=drop_last, generator=generator, device=self.device,
                               channels_last=self.channels_last)

    def epoch(self, epoch: int, domain: int):
        return self._stream(self.task.sources[domain].train, epoch, domain)

    def steps_per_epoch(self) -> int:
        steps = num_batches(len(self.task.sources[0].train), self.spec.recipe.batch_size)
        if steps < 1:
            raise ValueError(f"batch size {self.spec.recipe.batch_size} exceeds the training set")
        return steps

    def training_parts(self, epoch: int, use_targets: bool):
        """Yields, per step, one DomainBatch per source (labelled) and per target (unlabelled, y=None)."""
        sources = [self.epoch(epoch, d) for d in range(len(self.task.sources))]
        targets = [_cycle(lambda c, t=t, d=d: self._stream(t.train, epoch, d, c))
                   for d, t in enumerate(self.task.targets, start=len(self.task.sources))] if use_targets else []
        for batches in zip(*sources):
            parts = [DomainBatch(x, y, d) for d, (x, y) in enumerate(batches)]
            for d, stream in enumerate(targets, start=len(self.task.sources)):
                parts.append(DomainBatch(next(stream)[0], None, d))  # target labels never leave the loader
            yield parts

    def evaluation(self, split):
        return self._stream(split, 0, 0, shuffle=False, augment=False, drop_last=False, batch_size=EVAL_BATCH)

    def domain_id(self, name: str) -> int | None:
        names = self.task.domain_names
        return names.index(name) if name in names else None


def _cycle(make):
    cycle = 0
    while True:
        yield from make(cycle)
        cycle += 1


def _logits(model: TaskModel, method, context: BatchContext, loader: _Batches, split, domain: int | None):
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        context.set_batch(None, domain)
        return method.predict(model.net(x), context)

    return collect_logits(loader.evaluation(split), forward)


def _epoch_row(spec: RunSpec, epoch: int, model, method, context, loader: _Batches, task: TaskData,
               train_loss: float, train_acc: float, optimizer) -> dict[str, Any]:
    by_domain = {name: accuracy(*_logits(model, method, context, loader, split, loader.domain_id(name)))
                 for name, split in task.tests.items()}
    val_acc = accuracy(*_logits(model, method, context, loader, task.val, 0)) if len(task.val) else None
    return {"run_id": spec.run_id, "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "val_acc": val_acc, "test_acc": by_domain.get(task.primary_test), "test_acc_by_domain": by_domain,
            "lr": optimizer.param_groups[0]["lr"], "time_s": time.time()}


def _final_result(spec: RunSpec, grid, model, method, context, loader: _Batches, task: TaskData, state,
                  device: torch.device, wall_start: float) -> dict[str, Any]:
    history = state["history"]
    if not task.tests:  # a tuning run: validation metrics only
        return {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "grid": grid, "spec": spec.to_dict(),
                "metrics": {"val_last": history[-1]["val_acc"], "val_best": max(r["val_acc"] for r in history)},
                "resolved_hparams": method.hparams, "layer_report": layer_report(model.net),
                "timings": {"wall_s": time.time() - wall_start, "train_s": state["train_s"],
                            "eval_s": state["eval_s"], "epochs": state["epoch"], "steps": state["step"]},
                "environment": environment(device)}
    logits, labels = _logits(model, method, context, loader, task.tests[task.primary_test],
                             loader.domain_id(task.primary_test))
    per_class = per_class_accuracy(logits, labels, task.num_classes)
    best = max(history, key=lambda r: r["test_acc"])
    with_val = [r for r in history if r["val_acc"] is not None]
    selected = max(with_val, key=lambda r: r["val_acc"]) if with_val else None
    per_domain = history[-1]["test_acc_by_domain"]
    metrics = {
        "top1_last": history[-1]["test_acc"], "top1_best": best["test_acc"], "best_epoch": best["epoch"],
        "top1_val_selected": selected["test_acc"] if selected else None,
        "val_best": selected["val_acc"] if selected else None,
        "per_class_acc": per_class, **head_medium_tail(per_class, task.train_class_counts),
        "per_domain_acc": per_domain, "worst_domain_acc": min(per_domain.values()),
        **calibration(logits, labels),
    }
    return {
        "schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "grid": grid, "spec": spec.to_dict(),
        "metrics": metrics, "hmt_thresholds": {"head_min": HEAD_MIN, "tail_max": TAIL_MAX},
        "train_class_counts": task.train_class_counts, "resolved_hparams": method.hparams,
        "layer_report": layer_report(model.net),
        "task": {"name": task.name, "primary_test": task.primary_test, "domains": task.domain_names,
                 "num_classes": task.num_classes, "input": [task.channels, *task.size]},
        "timings": {"wall_s": time.time() - wall_start, "train_s": state["train_s"], "eval_s": state["eval_s"],
                    "epochs": state["epoch"], "steps": state["step"]},
        "environment": environment(device),
    }


def _save_checkpoint(path: Path, state: dict, model: nn.Module, optimizer, method) -> None:
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "method": method.state_dict(), "rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, model: nn.Module, optimizer, method, device: torch.device) -> dict:
    payload = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    method.load_state_dict(payload.pop("method"))
    torch.set_rng_state(payload.pop("rng").cpu())
    cuda_rng = payload.pop("cuda_rng")
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return payload
