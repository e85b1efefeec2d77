#!/usr/bin/env python
"""Speed of every method's training and evaluation step, against the full-precision step (issue #8).

For a chosen architecture, W/A bits and batch size, each method is set up exactly as a real run sets it up
(``build_model`` → ``TaskModel`` → ``prepare`` → ``calibrate`` → ``make_optimizer``) and its *own*
``method.training_step(model, optimizer, parts, loss_fn)`` is timed, interleaved with the FP step measured in
the same process on the same pre-generated batches (held on the device). Reported per method: median
training-step and evaluation-step time (evaluation in inference mode), the ratio of each to the FP step,
images/s and the peak memory of a step. Besides the methods: torch.ao's eager fake-quant QAT of the same model
as a peer reference (``benchmarks/speed/peer_fakequant.py``), the input pipeline alone (``iterate_batches``
with crop+flip augmentation, images/s), and the fixed per-run overhead of the harness (interpreter start-up, a
quick ``benchmarks.run.trainer.run`` end to end against its training time).

Examples:
  # ResNet-20, W4/A4, batch 128, CPU/GPU auto
  python benchmarks/bench_speed.py
  python benchmarks/bench_speed.py --methods fp,lsq,dorefa --steps 40 --profile 8
  # a method variant: NAME:KEY=VALUE[:KEY=VALUE]
  python benchmarks/bench_speed.py --methods alignq,alignq:admm=False
  # fused kernels vs the composites they replaced
  python benchmarks/bench_speed.py --methods lsq,lsq@reference
  python benchmarks/bench_speed.py --device cuda --amp bf16 --compile --steps 200 --block 10
  # compiled vs compiled FP and vs eager, per method (issue 18)
  python benchmarks/bench_speed.py --compile --vs-eager --methods lsq,dorefa --no-pipeline --no-overhead
  # packing gain: 4 concurrent runs sharing the device against one alone, as runs_per_gpu=4 (issue 18)
  python benchmarks/bench_speed.py --packed 4 --methods lsq --no-pipeline --no-overhead
Output: a Markdown table on stdout and a CSV (``--out``, default reports/speed.csv). No numbers are asserted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.cli.args import OneLineParser, fail, parse_bits
from benchmarks.cli.checks import check_device, check_int, check_output_dir
from benchmarks.run.labels import bits_label
from benchmarks.run.trainer_parts import pick_device
from benchmarks.speed.compiled import bench_compiled
from benchmarks.speed.extras import bench_overhead, bench_pipeline
from benchmarks.speed.measure import (
    cpu_peak_rss_mb,
    interleaved,
    memory_child,
    paired_ratio,
    profile_top_ops,
    step_memory,
)
from benchmarks.speed.packed import bench_packed, packed_lines
from benchmarks.speed.report import device_label, markdown, write_csv
from benchmarks.speed.setup import (
    PEER,
    REFERENCE,
    Options,
    Setup,
    batch_pool,
    build_setup,
    eval_step,
    parse_method_spec,
    train_step,
)
from methods import available_methods


# ------------------------------------------------------------------------------------------------ main bench
def bench_methods(
    specs: list[str],
    opts: Options,
    device: torch.device,
    memory: bool,
    profile: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    batches = batch_pool(opts, device)
    calib_x = batches[0][0]
    n = len(batches)
    blocks = max(1, math.ceil(opts.steps / opts.block))
    base = {
        "device": device_label(device),
        "arch": opts.arch,
        "bits": bits_label(opts.w_bits, opts.a_bits),
        "batch_size": opts.batch_size,
        "amp": opts.amp,
        "channels_last": opts.channels_last,
        "compile": opts.compile,
        "steps": blocks * opts.block,
    }
    rows: list[dict[str, Any]] = []
    fp_memory: float | None = None
    for spec in specs:
        row = {**base, "section": "step", "method": spec}
        try:
            fp = build_setup("fp", opts, device, calib_x)
            other = build_setup(spec, opts, device, calib_x)
            setups = {"fp": fp, "method": other}

            def trainer(s: Setup):
                return lambda i: train_step(s, *batches[i % n])

            def evaluator(s: Setup):
                return lambda i: eval_step(s, batches[i % n][0], opts.amp, device)

            for s in setups.values():
                s.model.train()
            t = interleaved(
                {k: trainer(s) for k, s in setups.items()}, blocks, opts.block, opts.warmup, device
            )
            for s in setups.values():
                s.model.eval()
            e = interleaved(
                {k: evaluator(s) for k, s in setups.items()}, blocks, opts.block, opts.warmup, device
            )
            for s in setups.values():
                s.model.train()
            train_ms, fp_ms = 1e3 * statistics.median(t["method"]), 1e3 * statistics.median(t["fp"])
            eval_ms, fp_eval = 1e3 * statistics.median(e["method"]), 1e3 * statistics.median(e["fp"])
            row.update(
                train_ms=train_ms,
                fp_train_ms=fp_ms,
                train_ratio=paired_ratio(t["method"], t["fp"]),
                train_img_s=opts.batch_size / train_ms * 1e3,
                eval_ms=eval_ms,
                fp_eval_ms=fp_eval,
                eval_ratio=paired_ratio(e["method"], e["fp"]),
                eval_img_s=opts.batch_size / eval_ms * 1e3,
            )
            if memory:
                if device.type == "cuda":
                    row["peak_mb"], row["fp_peak_mb"] = (
                        step_memory(other, batches, device),
                        step_memory(fp, batches, device),
                    )
                    row["memory_kind"] = "cuda max_memory_allocated during a step minus allocated before it"
                else:
                    if fp_memory is None:
                        fp_memory = cpu_peak_rss_mb("fp", opts)
                    row["peak_mb"], row["fp_peak_mb"] = cpu_peak_rss_mb(spec, opts), fp_memory
                    row["memory_kind"] = (
                        "cpu peak-RSS (VmHWM) growth over 3 training steps, fresh process per model"
                    )
            if profile:
                log(
                    f"\n#### where the time goes: {spec} (top {profile} ops by self time, 3 training steps)\n"
                )
                log("```\n" + profile_top_ops(other, batches, device, profile) + "```")
            del fp, other, setups
        except Exception as err:  # noqa: BLE001 - one failing method must not sink the table
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        rows.append(row)
        log(
            f"  {spec}: "
            + (
                f"train {row['train_ratio']:.2f}x FP, eval {row['eval_ratio']:.2f}x FP"
                if "train_ratio" in row
                else f"error {row['error']}"
            )
        )
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, default=32, help="square input side (CIFAR-size: 32)")
    p.add_argument("--bits", default="4/4", help="W/A bits of the quantized methods")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model (train and eval each)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per model first")
    p.add_argument(
        "--block",
        type=int,
        default=None,
        help="consecutive steps per timed block (device synchronised only at block edges); "
        "default 1 on CPU, 10 on CUDA",
    )
    p.add_argument("--pool", type=int, default=4, help="pre-generated batches, cycled (same for every model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--methods",
        default="all",
        help=f"comma list of registered methods (NAME or NAME:KEY=VALUE:...), '{PEER}', or 'all' "
        "(every registered method + the peer); a '@reference' suffix runs a method with the "
        "composites the speed work replaced (before/after timings)",
    )
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--amp", default="none", choices=("none", "bf16"), help="bf16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each model's features() and classify(), as a compiled run does")
    p.add_argument("--vs-eager", action="store_true",
                   help="with --compile: each method compiled against compiled FP and against itself eager, "
                   "interleaved in one process (replaces the step table)")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="with --compile on CUDA: capture steps as CUDA graphs where the method allows it")
    p.add_argument("--packed", type=int, default=0, metavar="N",
                   help="aggregate training images/s of N concurrent runs (one process each, sharing the "
                   "device, as runs_per_gpu=N) against one run alone, per method (replaces the step table)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak memory of a step (CPU: one child process per model)",
    )
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the input pipeline alone",
    )
    p.add_argument("--pipeline-images", type=int, default=20_000)
    p.add_argument(
        "--overhead",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time a quick benchmarks.run.trainer.run end to end against its training time",
    )
    p.add_argument(
        "--overhead-steps", type=int, default=10, help="steps per epoch of the quick run (2 epochs)"
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="K",
        help="print torch.profiler's top K ops per method (3 training steps)",
    )
    p.add_argument("--out", default="reports/speed.csv")
    p.add_argument("--markdown", default=None, help="also write the Markdown table here")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p


def expand_methods(text: str) -> list[str]:
    """'all' or a comma list of NAME[:KEY=VALUE[:KEY=VALUE...]] (registered methods or the peer)."""
    specs = (
        available_methods() + [PEER] if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    )
    known = set(available_methods()) | {PEER}
    for spec in specs:
        if parse_method_spec(spec)[0] not in known or (spec.endswith(REFERENCE) and spec.startswith(PEER)):
            raise ValueError(f"unknown method {spec!r}; valid: {', '.join(sorted(known))}")
    return specs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        w_bits, a_bits = parse_bits(args.bits)
        check_device(args.device)
        for flag, low in (("batch_size", 1), ("steps", 1), ("warmup", 0), ("block", 1), ("pool", 1),
                          ("threads", 1), ("num_classes", 2), ("input_size", 8), ("profile", 0),
                          ("packed", 0)):
            check_int(f"--{flag.replace('_', '-')}", getattr(args, flag), low)
        check_output_dir(Path(args.out).parent, "--out")
        device = pick_device(args.device)
        specs = expand_methods(args.methods) if args.memory_child is None else [args.memory_child]
    except ValueError as err:
        return fail(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    block = args.block or (10 if device.type == "cuda" else 1)
    opts = Options(
        arch=args.arch,
        num_classes=args.num_classes,
        input_size=args.input_size,
        w_bits=w_bits,
        a_bits=a_bits,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        block=block,
        pool=args.pool,
        device=str(device),
        channels_last=args.channels_last,
        amp=args.amp,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        seed=args.seed,
    )
    if args.memory_child is not None:
        memory_child(args.memory_child, opts)
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(
        f"bench_speed: {device_label(device)}, torch {torch.__version__}, {opts.arch} W{w_bits}/A{a_bits}, "
        f"batch {opts.batch_size}, methods {', '.join(specs)}"
    )
    if args.vs_eager and not args.compile:
        return fail("--vs-eager compares compiled with eager steps; valid: with --compile")
    if args.packed and (args.vs_eager or PEER in specs):
        return fail("--packed times methods' training runs; valid: without --vs-eager and the peer")
    if args.vs_eager:
        rows = bench_compiled(specs, opts, device, args.profile, log)
    elif args.packed:
        rows = []
        for spec in specs:
            rows.append(bench_packed(spec, opts, args.packed))
            command = " ".join([Path(sys.executable).name, "benchmarks/bench_speed.py", *(
                sys.argv[1:] if argv is None else argv)])
            print("\n".join(packed_lines(rows[-1], device_label(device), command)), flush=True)
    else:
        rows = bench_methods(specs, opts, device, args.memory, args.profile, log)
    if args.pipeline:
        rows += bench_pipeline(opts, device, args.pipeline_images)
    if args.overhead:
        try:
            rows += bench_overhead(opts, device, args.overhead_steps)
        except Exception as err:  # noqa: BLE001
            rows.append(
                {"section": "overhead", "method": "quick run", "error": f"{type(err).__name__}: {err}"}
            )
    for r in rows:
        for key in ("device", "arch", "batch_size", "amp", "channels_last", "compile"):
            r.setdefault(
                key,
                {
                    "device": device_label(device),
                    "arch": opts.arch,
                    "batch_size": opts.batch_size,
                    "amp": opts.amp,
                    "channels_last": opts.channels_last,
                    "compile": opts.compile,
                }[key],
            )
    table = markdown(rows)
    print(table)
    write_csv(Path(args.out), rows)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
