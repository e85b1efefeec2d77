"""One test-time adaptation run: the finished quantized parent's model adapts online to a continual stream
(predict each batch, then update; no reset between corruptions) and is scored per corruption in stream order.

The run directory is a run directory like any other (``RunDir``: spec.json, log.txt, claim, failed.json,
result.json, done). ``result.json`` is a result record (accuracy = 100 - mean error, per-domain accuracy per
corruption) plus a ``tta`` section with the errors in stream order, which the TTA tables read.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from benchmarks.data.batches import normalise
from benchmarks.data.registry import data_root as resolve_root
from benchmarks.data.streams import build_stream, stream_batches
from benchmarks.data.tasks import build_task
from benchmarks.run.environment import environment
from benchmarks.run.labels import bits_label
from benchmarks.run.result import Metrics, ResultRecord, Timings
from benchmarks.run.run_model import load_finished_model
from benchmarks.run.rundir import RunDir, atomic_write_json
from benchmarks.run.termination import raise_if_terminated
from benchmarks.run.tta_spec import TtaSpec
from methods import layer_report
from methods.tta import InputNorm, get_tta

Log = Callable[[str], None]


def run_tta(spec: TtaSpec, directory: RunDir, output: Path, grid: str | None, data_root: str | None,
            device: torch.device, log: Log) -> ResultRecord:
    """Adapt ``spec``'s parent on its stream into ``directory``. Called by ``trainer.run``, which claims the
    run, writes spec.json and records failures for every kind of run."""
    wall_start = time.time()
    directory.write_heartbeat()
    directory.clear_failure()
    parent = spec.parent()
    task = build_task(parent.task.dataset, parent.task.target, root=data_root, seed=parent.seed,
                      val_fraction=parent.task.val_fraction)
    model, _, _ = load_finished_model(output, parent, task, device)
    net = model.net
    start = time.time()
    segments = build_stream(spec.stream, task.tests[task.primary_test], parent.task.dataset,
                            resolve_root(data_root))
    stream_s = time.time() - start
    method = get_tta(spec.method, **spec.hparams)
    torch.manual_seed(spec.stream.seed)
    method.setup(net, InputNorm(task.mean, task.std))
    bits = bits_label(spec.w_bits, spec.a_bits, parent.method)
    errors, sizes, adapt_s = [], [], 0.0
    for segment in segments:
        raise_if_terminated(f"before corruption {segment.corruption}")
        wrong, start = 0, time.time()
        for images, labels in stream_batches(segment, spec.stream.batch_size):
            logits = method.adapt(net, normalise(images.to(device), task.mean, task.std))
            wrong += int((logits.argmax(1).cpu() != labels).sum())
        adapt_s += time.time() - start
        errors.append(100.0 * wrong / len(segment.data))
        sizes.append(len(segment.data))
        directory.write_heartbeat()
        log(f"[{spec.run_id}] {spec.method} on {parent.method} {bits} {segment.corruption}: "
            f"error {errors[-1]:.2f} ({len(segment.data)} images)")
    mean_error = sum(errors) / len(errors)
    log(f"[{spec.run_id}] {spec.method} mean error {mean_error:.2f} over {len(errors)} corruptions "
        f"(adaptation {adapt_s:.1f} s)")
    per_domain = {name: 100.0 - err for name, err in zip(spec.stream.corruptions, errors)}
    record = ResultRecord(
        run_id=spec.run_id, spec=spec.to_dict(), grid=grid,
        metrics=Metrics(top1_last=100.0 - mean_error, per_domain_acc=per_domain,
                        worst_domain_acc=min(per_domain.values())),
        timings=Timings(wall_s=time.time() - wall_start, train_s=adapt_s, eval_s=stream_s),
        environment=environment(device), layer_report=layer_report(net),
        resolved_hparams=dict(method.hparams), train_class_counts=task.train_class_counts,
        task={"name": task.name, "num_classes": task.num_classes})
    data = record.to_dict()
    data["tta"] = {"corruptions": list(spec.stream.corruptions), "error": errors, "images": sizes,
                   "mean_error": mean_error, "severity": spec.stream.severity, "source": spec.stream.source,
                   "adapt_s": adapt_s, "stream_s": stream_s}
    atomic_write_json(directory.result_path, data)
    directory.mark_done()
    return record
