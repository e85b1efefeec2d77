"""Packing gain (issue 18): the aggregate training images/s of N concurrent runs sharing one device against
one run alone, as ``runs_per_gpu`` = N places them (``benchmarks/launch/packing.py``).

Each run is its own spawned process doing what the step benchmark times: the method's real training step
(``build_setup`` → ``train_step``) on its own pre-generated batches. The runs build and warm up, then wait
at a barrier so that their timed windows overlap; aggregate images/s = every run's timed images over the
span from the first run's start to the last run's end (the wall clock a pack of N costs). The single run
is the same process alone. CPU threads per process follow the packer's rule (``OMP_NUM_THREADS`` = cores
// N unless the user set it), so a pack of N shares the cores as a packed job does.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import asdict
from typing import Any

import torch

from benchmarks.speed.setup import Options, batch_pool, build_setup, train_step


def _member(spec: str, opts_dict: dict[str, Any], barrier: Any, results: Any) -> None:
    """One run: build, warm up, wait for the others, time ``opts.steps`` training steps."""
    try:
        opts = Options(**opts_dict)
        device = torch.device(opts.device)
        batches = batch_pool(opts, device)
        setup = build_setup(spec, opts, device, batches[0][0])
        setup.model.train()
        for i in range(opts.warmup):
            train_step(setup, *batches[i % len(batches)])
        _sync(device)
        barrier.wait(timeout=600)
        start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on one machine
        for i in range(opts.steps):
            train_step(setup, *batches[i % len(batches)])
        _sync(device)
        end = time.perf_counter()
        results.put({"start": start, "end": end, "images": opts.steps * opts.batch_size, "error": None})
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the measurement
        barrier.abort()
        results.put({"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_concurrently(spec: str, opts: Options, n: int) -> dict[str, float]:
    """N runs of ``spec`` at once; returns aggregate and per-run images/s."""
    context = multiprocessing.get_context("spawn")  # no forked torch/CUDA state, as PackedJob
    barrier, results = context.Barrier(n), context.Queue()
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = saved or str(max(1, len(os.sched_getaffinity(0)) // n))
    try:
        processes = [context.Process(target=_member, args=(spec, asdict(opts), barrier, results))
                     for _ in range(n)]
        for process in processes:
            process.start()
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS")
    outcomes = [results.get(timeout=3600) for _ in processes]  # before join: a full queue blocks exit
    for process in processes:
        process.join()
    errors = [o["error"] for o in outcomes if o["error"]]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} runs failed: {errors[0]}")
    span = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
    return {"aggregate_img_s": sum(o["images"] for o in outcomes) / span,
            "per_run_img_s": min(o["images"] / (o["end"] - o["start"]) for o in outcomes),
            "threads": float(saved or max(1, len(os.sched_getaffinity(0)) // n))}


def bench_packed(spec: str, opts: Options, n: int) -> dict[str, Any]:
    """One run alone, then N together: the row the benchmark prints (gain = aggregate / single)."""
    single = run_concurrently(spec, opts, 1)
    packed = run_concurrently(spec, opts, n)
    gain = packed["aggregate_img_s"] / single["aggregate_img_s"]
    return {"section": "packed", "method": spec, "runs": n, "steps": opts.steps,
            "value": gain, "unit": "x one run (aggregate images/s)",
            "note": f"{n} concurrent runs: {packed['aggregate_img_s']:.1f} images/s; one alone: "
                    f"{single['aggregate_img_s']:.1f}",
            "single_img_s": single["aggregate_img_s"], "single_threads": int(single["threads"]),
            "aggregate_img_s": packed["aggregate_img_s"], "slowest_run_img_s": packed["per_run_img_s"],
            "threads_per_run": int(packed["threads"]),
            "gain": gain}


def packed_lines(row: dict[str, Any], device: str, command: str) -> list[str]:
    """What ``--packed`` prints: the measurement, its device and the command that made it."""
    return [
        f"packed: {row['runs']} concurrent runs of {row['method']} on {device}",
        f"single run: {row['single_img_s']:.1f} images/s ({row['single_threads']} threads)",
        f"aggregate of {row['runs']}: {row['aggregate_img_s']:.1f} images/s "
        f"({row['threads_per_run']} threads each; slowest run {row['slowest_run_img_s']:.1f} images/s)",
        f"gain (aggregate / single): {row['gain']:.2f}",
        f"command: {command}",
    ]
