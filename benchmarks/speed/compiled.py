"""Compiled steps against compiled FP and against the same method in eager mode (issue 18).

Per method, three models step on the same pre-generated batches in one process, interleaved round by round:
FP compiled (built once, shared by every method), the method compiled, the method eager. Reported: the
compiled method's training and evaluation step as a ratio of compiled FP's (paired per round), the eager
step over the compiled one (the compile speed-up), and whether the steps are captured as CUDA graphs (with
the reason where not). Compilation happens in the warm-up steps, outside the timed rounds.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from benchmarks.speed.measure import interleaved, paired_ratio, profile_top_ops
from benchmarks.speed.setup import Options, Setup, batch_pool, build_setup, eval_step, train_step


def capture_label(setup: Setup) -> str:
    if setup.plan is None:
        return "eager"
    return "yes" if setup.plan.cuda_graphs else "no: " + "; ".join(setup.plan.blockers)


def _stepper(setup: Setup, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[int], Any]:
    return lambda i: train_step(setup, *batches[i % len(batches)])


def _evaluator(setup: Setup, batches: list[tuple[torch.Tensor, torch.Tensor]], amp: str,
               device: torch.device) -> Callable[[int], Any]:
    return lambda i: eval_step(setup, batches[i % len(batches)][0], amp, device)


def bench_compiled(specs: list[str], opts: Options, device: torch.device, profile: int,
                   log: Callable[[str], None]) -> list[dict[str, Any]]:
    batches = batch_pool(opts, device)
    blocks = max(1, math.ceil(opts.steps / opts.block))
    compiled_opts, eager_opts = replace(opts, compile=True), replace(opts, compile=False)
    start = time.perf_counter()
    fp = build_setup("fp", compiled_opts, device, batches[0][0])
    rows: list[dict[str, Any]] = []
    for spec in specs:
        row: dict[str, Any] = {"section": "compiled", "method": spec, "compile": True,
                               "steps": blocks * opts.block}
        try:
            setups = {"fp": fp, "compiled": build_setup(spec, compiled_opts, device, batches[0][0]),
                      "eager": build_setup(spec, eager_opts, device, batches[0][0])}
            t0 = time.perf_counter()
            for s in setups.values():  # compile outside the timed rounds (training, then evaluation graphs)
                s.model.train()
                train_step(s, *batches[0])
                s.model.eval()
                eval_step(s, batches[0][0], opts.amp, device)
            row["compile_s"] = time.perf_counter() - t0
            for s in setups.values():
                s.model.train()
            t = interleaved({k: _stepper(s, batches) for k, s in setups.items()},
                            blocks, opts.block, opts.warmup, device)
            for s in setups.values():
                s.model.eval()
            e = interleaved({k: _evaluator(s, batches, opts.amp, device) for k, s in setups.items()},
                            blocks, opts.block, opts.warmup, device)
            for s in setups.values():
                s.model.train()
            train_ms = 1e3 * statistics.median(t["compiled"])
            row.update(
                train_ms=train_ms,
                fp_train_ms=1e3 * statistics.median(t["fp"]),
                train_ratio=paired_ratio(t["compiled"], t["fp"]),
                eager_train_ms=1e3 * statistics.median(t["eager"]),
                compile_speedup=paired_ratio(t["eager"], t["compiled"]),
                train_img_s=opts.batch_size / train_ms * 1e3,
                eval_ms=1e3 * statistics.median(e["compiled"]),
                fp_eval_ms=1e3 * statistics.median(e["fp"]),
                eval_ratio=paired_ratio(e["compiled"], e["fp"]),
                eager_eval_ms=1e3 * statistics.median(e["eager"]),
                cuda_graphs=capture_label(setups["compiled"]),
            )
            if profile:
                log(f"\n#### where the time goes: {spec} compiled (top {profile} ops by self time, "
                    "3 steps)\n")
                log("```\n" + profile_top_ops(setups["compiled"], batches, device, profile) + "```")
            del setups
        except Exception as err:  # noqa: BLE001 - one failing method must not sink the table
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        rows.append(row)
        log(f"  {spec} compiled: " + (
            f"train {row['train_ratio']:.2f}x compiled FP, {row['compile_speedup']:.2f}x faster than eager "
            f"(compiling took {row['compile_s']:.0f} s)"
            if "train_ratio" in row else f"error {row['error']}"))
    log(f"  compiled section: {time.perf_counter() - start:.0f} s")
    return rows
