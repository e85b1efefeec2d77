"""One run, start to finish: FP training or QAT fine-tuning from the FP parent, resumable at epoch boundaries;
a run of a post-training method (``kind == "ptq"``) goes to ``ptq_runner.run_ptq`` with the same claim,
spec, failure and log handling.

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

from benchmarks.data.splits import stratified_split
from benchmarks.data.tasks import build_task
from benchmarks.run import distributed
from benchmarks.run.checkpoint import CheckpointUnusable, apply_checkpoint, read_checkpoint, save_checkpoint
from benchmarks.run.compile_step import compile_features, plan_compile
from benchmarks.run.divergence import DivergenceWatch
from benchmarks.run.labels import bits_label
from benchmarks.run.ptq_runner import run_ptq
from benchmarks.run.result import ResultRecord
from benchmarks.run.run_model import build_run_model, load_weights
from benchmarks.run.rundir import RunDir, atomic_write_with
from benchmarks.run.schedules import grl_coefficient, lr_factor
from benchmarks.run.scoring import epoch_row, final_result
from benchmarks.run.spec import SCHEMA_VERSION, RunSpec
from benchmarks.run.step_checkpoints import StepCheckpoints, epoch_tallies, resume_position
from benchmarks.run.streamed import batch_source, streamed_task
from benchmarks.run.termination import Terminated, raise_if_terminated
from benchmarks.run.trainer_parts import make_loss_fn, make_optimizer, pick_device
from benchmarks.run.tta_spec import TtaSpec
from benchmarks.run.validate import layer_policy_of
from methods import calibrate, method_class, prepare

Log = Callable[[str], None]


def run(spec: RunSpec | TtaSpec, output: Path, *, grid: str | None = None, data_root: str | None = None,
        device: str = "auto", channels_last: bool = True, max_epochs: int | None = None,
        log: Log = print, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        eval_test: bool = True, provenance: dict[str, Any] | None = None,
        failed_after: float | None = None) -> ResultRecord | None:
    """Train ``spec`` into ``<output>/runs/<run_id>``; returns the result, or None if stopped early.

    A finished run is returned as is. An interrupted one resumes from its checkpoint. ``max_epochs`` stops
    after that many epochs in this call (for time-sliced jobs and tests). ``on_epoch(row)`` sees each epoch's
    metrics row after it is saved (a tuner reports it and may raise to prune). ``eval_test=False`` never
    evaluates a test split (tuning selects on the validation split only). ``provenance`` (e.g. the Optuna
    study that tuned the hyper-parameters) is stored in spec.json. Failures are recorded in ``failed.json``
    and re-raised.

    The run is claimed first (``RunDir.claim``): when another live process is training it, RunClaimed is
    raised and nothing of the run is touched, so concurrent launchers and requeued jobs never train it twice.
    A post-training run (``ptq_runner``) and a test-time adaptation run (``tta_runner``) go through the same
    claim, records and failure handling; only the work inside differs. With ``failed_after`` (a job's
    submission time), a failure recorded since then by another job is raised
    as FailedElsewhere instead of training the run again.
    """
    directory = RunDir.of(output, spec.run_id)
    if directory.is_done():
        return directory.read_result()
    with directory.claim():
        if directory.is_done():  # finished by the previous owner while this process waited to start
            return directory.read_result()
        if failed_after is not None:  # checked under the claim: the failing job wrote it before releasing
            directory.raise_if_failed_since(failed_after)
        _write_spec(directory, spec, grid, provenance)
        log = _logging_to(directory, log)
        try:
            if isinstance(spec, TtaSpec):  # test-time adaptation of a finished quantized run: its own runner
                from benchmarks.run.tta_runner import run_tta

                return run_tta(spec, directory, Path(output), grid, data_root, pick_device(device), log)
            if method_class(spec.method).kind == "ptq":  # post-training quantization: its own runner
                return run_ptq(spec, directory, Path(output), grid, data_root, pick_device(device), log,
                               on_epoch, eval_test)
            try:
                return _train(spec, directory, Path(output), grid, data_root, pick_device(device),
                              channels_last, max_epochs, log, on_epoch, eval_test)
            except CheckpointUnusable as err:
                log(f"[{spec.run_id}] warning: {err}")
                return _train(spec, directory, Path(output), grid, data_root, pick_device(device),
                              channels_last, max_epochs, log, on_epoch, eval_test)
        except BaseException as err:
            interrupted = isinstance(err, (KeyboardInterrupt, Terminated))
            directory.write_failure(f"{type(err).__name__}: {err}", traceback.format_exc(), interrupted)
            log(f"[{spec.run_id}] {'interrupted' if interrupted else 'FAILED'}: {type(err).__name__}: {err}")
            raise
        finally:  # this process no longer works on the run (a SIGKILL is detected from the dead pid instead)
            directory.write_heartbeat(finished=True)


def _logging_to(directory: RunDir, log: Log) -> Log:
    """``log`` that also appends each line to the run's log.txt, so a run's story is in its directory."""
    def both(line: str) -> None:
        log(line)
        directory.append_log(line)

    return both


def _write_spec(directory: RunDir, spec: RunSpec | TtaSpec, grid: str | None,
                provenance: dict[str, Any] | None) -> None:
    existing = directory.read_spec()
    if existing is not None:
        if existing.get("run_id") != spec.run_id:
            owner = existing.get("run_id")
            raise ValueError(f"{directory.spec_path} belongs to run {owner}, not {spec.run_id}")
        return
    directory.write_spec({"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "grid": grid,
                          "spec": spec.to_dict(), "provenance": provenance})


def _train(spec: RunSpec, directory: RunDir, output: Path, grid: str | None, data_root: str | None,
           device: torch.device, channels_last: bool, max_epochs: int | None, log: Log,
           on_epoch: Callable[[dict[str, Any]], None] | None, eval_test: bool) -> ResultRecord | None:
    wall_start = time.time()
    distributed.check_world(spec.recipe)  # a data-parallel spec outside its process group: refused at once
    directory.write_heartbeat()
    directory.clear_failure()
    task = streamed_task(spec, data_root)  # paths only, for a folder-streamed dataset (ImageNet): streamed.py
    if task is None:
        task = build_task(spec.task.dataset, spec.task.target, root=data_root, seed=spec.seed,
                          val_fraction=spec.task.val_fraction, trial=spec.task.trial)
    if not eval_test:
        task.tests = {}  # tuning: the test splits are dropped before anything could read them
    elif spec.task.test_subsample:
        task.tests = {name: _subsample(split, spec.task.test_subsample) for name, split in task.tests.items()}
    model, method, context = build_run_model(spec, task, device, channels_last)
    use_targets = spec.task.protocol == "dann"
    parent = spec.parent()
    if parent is not None:
        parent_dir = RunDir.of(output, parent.run_id)
        if not parent_dir.is_done():
            raise FileNotFoundError(f"FP parent run {parent.run_id} is not done "
                                    f"(expected {parent_dir.final_path})")
        load_weights(model, parent_dir.final_path, device)
    prepare(model.net, method, spec.w_bits, spec.a_bits, layer_policy_of(spec), context)
    model.to(device)

    loader = batch_source(task, spec, device, channels_last)
    steps = min(loader.steps_per_epoch(), spec.recipe.steps_per_epoch or 10**9)
    optimizer = make_optimizer(model, spec.recipe)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    total_steps = steps * spec.recipe.epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "train_s": 0.0, "eval_s": 0.0}
    checkpoint = directory.checkpoint_path
    resumed = checkpoint.exists()
    if resumed:
        state = apply_checkpoint(read_checkpoint(checkpoint, device), model, optimizer, method)
        log(f"[{spec.run_id}] resuming after epoch {state['epoch']}")
    else:
        calibrate(model.net, next(loader.epoch(0, 0))[0])
    if spec.recipe.compile:  # after calibration, which initialises the quantizers eagerly
        parts = len(task.sources) + (len(task.targets) if use_targets else 0)
        # data-parallel: no CUDA graphs (DDP's hooks and sync_bn's collectives in a replay: untested)
        plan = plan_compile(model.net, device, parts, cuda_graphs=spec.recipe.processes == 1)
        log(f"[{spec.run_id}] {compile_features(model.net, plan, spec.recipe.batch_size)}")
    position, resumed_tallies = resume_position(state)
    parallel = distributed.join(model, optimizer, loader, spec.recipe, spec.seed, resumed=resumed,
                                gradients_from_backward=method.gradients_from_backward)
    step_checkpoints = StepCheckpoints(spec.recipe, parallel)

    tally: dict[str, Any] = {}  # the running accuracy and GRL coefficient of the current epoch
    loss_fn = make_loss_fn(model, method, context, device, spec.recipe.amp, tally,
                           parallel.ddp if parallel is not None else None)

    epochs_this_call = 0
    while state["epoch"] < spec.recipe.epochs:
        if max_epochs is not None and epochs_this_call >= max_epochs:
            return None
        epoch = state["epoch"]
        model.train()
        start = time.time()
        tally.update(correct=torch.zeros((), device=device), seen=0, grl=0.0)
        loss_sum = torch.zeros((), device=device)
        watch = DivergenceWatch(epoch + 1, device)
        if position:
            log(f"[{spec.run_id}] resuming epoch {epoch + 1} after its step {position}")
            loss_sum = resumed_tallies.restore(tally)
        for index, parts in enumerate(loader.training_parts(epoch, use_targets, skip=position)):
            if index >= steps:
                break
            if index < position:  # trained before the interruption: drawn (the order advances), not trained
                continue
            raise_if_terminated(f"before step {state['step'] + 1} (epoch {epoch + 1})")
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * lr_factor(spec.recipe, state["step"], steps)
            tally["grl"] = grl_coefficient(state["step"], total_steps)
            if parallel is not None:
                parallel.start_step()
            loss = method.training_step(model, optimizer, parts, loss_fn)
            loss_sum += loss
            state["step"] += 1
            watch.observe(loss, index + 1)
            if step_checkpoints.due(index + 1, steps):
                save_checkpoint(checkpoint, {**state, **epoch_tallies(index + 1, loss_sum, tally)}, model,
                                optimizer, method)
        position = 0
        if parallel is not None:
            loss_sum = parallel.reduce_epoch(loss_sum, tally)
        watch.check_epoch_end(model)
        state["train_s"] += time.time() - start
        start = time.time()
        row = epoch_row(spec, epoch + 1, model, method, context, loader, task, loss_sum.item() / steps,
                         100.0 * tally["correct"].item() / max(1, tally["seen"]), optimizer)
        state["eval_s"] += time.time() - start
        state["history"].append(row)
        state["epoch"] = epoch + 1
        epochs_this_call += 1
        save_checkpoint(checkpoint, state, model, optimizer, method)
        directory.write_metrics(state["history"])
        directory.write_heartbeat()
        shown = "test" if eval_test else "val"
        bits = bits_label(spec.w_bits, spec.a_bits, spec.method)
        log(f"[{spec.run_id}] {spec.method} {bits} epoch {epoch + 1}/{spec.recipe.epochs} "
            f"loss {row['train_loss']:.4f} train {row['train_acc']:.2f} {shown} {row[shown + '_acc']:.2f}")
        if on_epoch is not None:
            on_epoch(row)
    result = final_result(spec, grid, model, method, context, loader, task, state, device, wall_start)
    weights = model.state_dict()
    if not distributed.is_writer():  # another rank of a data-parallel run: rank 0 writes the records
        return result
    atomic_write_with(directory.final_path, lambda tmp: torch.save(weights, tmp))
    directory.write_result(result)
    directory.mark_done()
    checkpoint.unlink(missing_ok=True)
    return result


def _subsample(split, limit: int):
    """A fixed class-stratified subset (seed 0 for every run, so all runs see the same images)."""
    if len(split) <= limit:
        return split
    return stratified_split(split, limit / len(split), seed=0)[1]
