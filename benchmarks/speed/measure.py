"""How the speed benchmark measures: timed blocks with device synchronisation at their edges, FP steps
interleaved with the method's, paired ratios, peak memory (CUDA allocator or a child process's RSS) and a
profiler's top operators."""
from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed.setup import REPO, Options, Setup, batch_pool, build_setup, train_step


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(fn: Callable[[int], Any], start: int, count: int, device: torch.device) -> float:
    """Seconds for ``count`` consecutive calls; the device is synchronised only at the block's edges."""
    sync_device(device)
    t0 = time.perf_counter()
    for i in range(count):
        fn(start + i)
    sync_device(device)
    return time.perf_counter() - t0


def interleaved(
    fns: dict[str, Callable[[int], Any]], blocks: int, block: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Per-step seconds of each function: warm-up, then ``blocks`` rounds, the order alternating each
    round."""
    names = list(fns)
    for name in names:
        time_block(fns[name], 0, warmup, device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(blocks):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_block(fns[name], warmup + r * block, block, device) / block)
    return times


def paired_ratio(method: list[float], fp: list[float]) -> float:
    """Median over rounds of method/FP, each pair measured back to back (robust to load drift)."""
    return statistics.median(m / f for m, f in zip(method, fp))


def step_memory(setup: Setup, batches, device: torch.device, steps: int = 2) -> float | None:
    """CUDA: peak bytes allocated during training steps above what was allocated before them (MiB)."""
    if device.type != "cuda":
        return None
    setup.model.train()
    sync_device(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps):
        x, y = batches[i % len(batches)]
        train_step(setup, x, y)
    sync_device(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


# ----------------------------------------------------------------------------------------------- memory (CPU)
def cpu_peak_rss_mb(spec: str, opts: Options) -> float | None:
    """Peak RSS growth of training steps in a fresh child process
    (peak RSS after 3 steps minus after setup).

    torch's CPU allocator keeps no peak statistics and peak RSS is a process-wide high-water mark, so each
    model is measured alone in its own process.
    """
    args = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_speed.py"),
        "--memory-child",
        spec,
        "--arch",
        opts.arch,
        "--bits",
        f"{opts.w_bits}/{opts.a_bits}",
        "--batch-size",
        str(opts.batch_size),
        "--device",
        "cpu",
        "--num-classes",
        str(opts.num_classes),
        "--input-size",
        str(opts.input_size),
        "--channels-last" if opts.channels_last else "--no-channels-last",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)["peak_mb"]
    return None


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM on Linux (per address space, so not inherited across fork+exec as
    ru_maxrss is: a child of a large benchmark process would otherwise start at the parent's peak), else
    ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 if platform.system() == "Darwin" else 1.0  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024.0


def memory_child(spec: str, opts: Options) -> None:
    device = torch.device("cpu")
    batches = batch_pool(opts, device)
    setup = build_setup(spec, opts, device, batches[0][0])
    base = _peak_rss_mb()
    for i in range(3):
        train_step(setup, *batches[i % len(batches)])
    print(json.dumps({"peak_mb": _peak_rss_mb() - base}))


# ------------------------------------------------------------------------------------------------ profiling
def profile_top_ops(setup: Setup, batches, device: torch.device, top: int, steps: int = 3) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    setup.model.train()
    with profile(activities=activities) as prof:
        for i in range(steps):
            train_step(setup, *batches[i % len(batches)])
        sync_device(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)
