"""A post-training quantization (PTQ) run: the run kind beside QAT, for methods whose ``kind`` is ``ptq``.

From the finished FP parent (``RunSpec.parent()``, as for QAT): load its final weights, keep a full-precision
copy, ``prepare`` the network for the method, draw the calibration set from the training split
(``calibration.py``: ``calib_size`` images, seeded, never the test split), run the method's reconstruction,
evaluate, and write the run directory as every run does: spec.json (written by ``trainer.run``), one metrics
row, result.json (``ResultRecord``), final.pt, log.txt and done last. final.pt is the state dict of the
network prepared for the method, its quantizers holding the learned rounding and steps, so
``load_finished_model`` rebuilds the quantized model exactly (test-time adaptation starts from it).

A PTQ run has no epochs and no resumable checkpoint: interrupted (a SIGTERM is honoured after the current
unit), it starts again from the FP parent.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.data.splits import stratified_split
from benchmarks.data.tasks import build_task
from benchmarks.run.batches import Batches
from benchmarks.run.calibration import draw_calibration
from benchmarks.run.evaluation import accuracy
from benchmarks.run.labels import bits_label
from benchmarks.run.result import ResultRecord
from benchmarks.run.run_model import build_run_model, load_weights
from benchmarks.run.rundir import RunDir, atomic_write_with
from benchmarks.run.scoring import final_result, logits_on
from benchmarks.run.spec import RunSpec
from benchmarks.run.termination import raise_if_terminated
from benchmarks.run.validate import layer_policy_of
from methods import prepare
from methods.ptq import PtqMethod

Log = Callable[[str], None]


def run_ptq(spec: RunSpec, directory: RunDir, output: Path, grid: str | None, data_root: str | None,
            device: torch.device, log: Log, on_epoch: Callable[[dict[str, Any]], None] | None,
            eval_test: bool) -> ResultRecord:
    """Quantize ``spec``'s FP parent with its PTQ method into ``directory``; returns the result record."""
    wall_start = time.time()
    directory.write_heartbeat()
    directory.clear_failure()
    task = build_task(spec.task.dataset, spec.task.target, root=data_root, seed=spec.seed,
                      val_fraction=spec.task.val_fraction)
    if not eval_test:
        task.tests = {}  # tuning: the test splits are dropped before anything could read them
    elif spec.task.test_subsample:
        task.tests = {name: _subsample(split, spec.task.test_subsample) for name, split in task.tests.items()}
    model, method, context = build_run_model(spec, task, device)
    if not isinstance(method, PtqMethod):
        raise ValueError(f"method {spec.method!r} is not a post-training method")
    parent = spec.parent()
    assert parent is not None  # a PTQ method is never "fp"
    parent_dir = RunDir.of(output, parent.run_id)
    if not parent_dir.is_done():
        raise FileNotFoundError(f"FP parent run {parent.run_id} is not done "
                                f"(expected {parent_dir.final_path})")
    load_weights(model, parent_dir.final_path, device)
    model.eval()
    fp_net = copy.deepcopy(model.net)
    prepare(model.net, method, spec.w_bits, spec.a_bits, layer_policy_of(spec), context)
    model.to(device)

    calib, drawn = draw_calibration(task, method.hparams["calib_size"], spec.seed, device)
    log(f"[{spec.run_id}] {spec.method} {bits_label(spec.w_bits, spec.a_bits)}: {len(drawn)} calibration "
        f"images from the training split of {task.sources[0].name}")
    torch.manual_seed(spec.seed)  # QDrop's dropping and PCR's noise draw from the global generator
    start = time.time()

    def progress(line: str) -> None:
        """Called after each stage start and each unit: the log line, a fresh heartbeat (a long reconstruction
        is not mistaken for a dead one), and the check for a pending SIGTERM (preemption)."""
        log(f"[{spec.run_id}] {line}")
        directory.write_heartbeat()
        raise_if_terminated(f"during {spec.method} reconstruction")

    units = method.reconstruct(model.net, fp_net, calib, spec.seed, log=progress)
    recon_s = time.time() - start
    directory.write_heartbeat()

    start = time.time()
    loader = Batches(task, spec, device, channels_last=False)
    row = _metrics_row(spec, model, method, context, loader, task, calib, drawn, units)
    eval_s = time.time() - start
    directory.write_metrics([row])
    state = {"history": [row], "train_s": recon_s, "eval_s": eval_s, "epoch": 1,
             "step": sum(u["iters"] for u in units)}
    result = final_result(spec, grid, model, method, context, loader, task, state, device, wall_start)
    weights = model.state_dict()
    atomic_write_with(directory.final_path, lambda tmp: torch.save(weights, tmp))
    directory.write_result(result)
    directory.mark_done()
    shown = "test" if eval_test else "val"
    log(f"[{spec.run_id}] {spec.method} {bits_label(spec.w_bits, spec.a_bits)} done in {recon_s:.1f}s: "
        f"{shown} {row[shown + '_acc']:.2f}")
    if on_epoch is not None:
        on_epoch(row)
    return result


def _metrics_row(spec: RunSpec, model, method, context, loader: Batches, task, calib: torch.Tensor, drawn,
                 units: list[dict]) -> dict[str, Any]:
    """The one metrics row of a PTQ run, with the keys of a training epoch's row: ``train_loss`` is the mean
    final reconstruction error of the last stage's units, ``train_acc`` the accuracy on the calibration
    set."""
    by_domain = {name: accuracy(*logits_on(model, method, context, loader, split, loader.domain_id(name)))
                 for name, split in task.tests.items()}
    val_acc = accuracy(*logits_on(model, method, context, loader, task.val, 0)) if len(task.val) else None
    with torch.inference_mode():
        calib_acc = accuracy(model.net(calib).cpu(), drawn.labels)
    last_stage = [u for u in units if u["stage"] == max((v["stage"] for v in units), default=0)]
    recon_error = sum(u["error_after"] for u in last_stage) / len(last_stage) if last_stage else 0.0
    return {"run_id": spec.run_id, "epoch": 1, "train_loss": recon_error, "train_acc": calib_acc,
            "val_acc": val_acc, "test_acc": by_domain.get(task.primary_test), "test_acc_by_domain": by_domain,
            "lr": 0.0, "time_s": time.time(), "recon_units": units}


def _subsample(split, limit: int):
    """The trainer's fixed class-stratified test subset (seed 0 for every run)."""
    if len(split) <= limit:
        return split
    return stratified_split(split, limit / len(split), seed=0)[1]
