#!/usr/bin/env python
"""Train one run: full-precision training, or QAT fine-tuning of a method from its FP parent.

Examples (offline, CPU):
  python benchmarks/run_one.py --dataset mnist --arch dann_digits --method fp --epochs 2
  python benchmarks/run_one.py --dataset mnist --arch dann_digits --method lsq --bits 4/4 --epochs 1 \\
      --fp-epochs 2            # trains (or reuses) the FP parent first, then LSQ W4/A4 from it
The run directory is <output>/runs/<run_id>; running the same command again reuses or resumes it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import OneLineParser, fail, parse_bits, parse_hparams, parse_layer_policy  # noqa: E402
from benchmarks.cli.checks import check_device, check_output_dir  # noqa: E402
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="training dataset (source), e.g. mnist, cifar10-lt-r100")
    p.add_argument("--target", default=None, help="target domain for domain shift, e.g. mnistm-synth")
    p.add_argument("--protocol", default="standard", help="standard | dann | source_only")
    p.add_argument("--arch", required=True, help="architecture, e.g. dann_digits, resnet20")
    p.add_argument("--method", required=True,
                   help="fp | lsq | dorefa | alignq | climbq | emaq | emaq-lt (QAT) | rtn | adaround | "
                        "brecq | qdrop | ttaq (post-training: quantizes the FP parent; --epochs/--lr unused)")
    p.add_argument("--bits", default="32/32", help="W/A bits, e.g. 4/4 (ignored for fp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1, help="epochs of this run")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", default="cosine", help="multistep | cosine | constant | dann")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap steps per epoch (quick looks)")
    p.add_argument("--fp-epochs", type=int, default=2, help="epochs of the FP parent of a QAT run")
    p.add_argument("--fp-lr", type=float, default=0.05)
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyper-parameter")
    p.add_argument("--first-last", default=None, help="layer policy 'FIRST/LAST', each same|8bit|fp")
    p.add_argument("--output", default="outputs/single", help="output directory (runs/<run_id> inside)")
    p.add_argument("--data-root", default=None, help="data directory (default $QBENCH_DATA_ROOT or ./data)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training and evaluation steps (close to eager, not bit-identical: "
                   "another run id; docs/speed.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.run.trainer import run

    try:
        w_bits, a_bits = (32, 32) if args.method == "fp" else parse_bits(args.bits)
        policy = parse_layer_policy(args.first_last)
        task = TaskSpec(args.dataset, args.target, args.protocol)
        recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                        weight_decay=args.weight_decay, steps_per_epoch=args.steps_per_epoch,
                        compile=args.compile)
        fp_recipe = Recipe(epochs=args.fp_epochs, batch_size=args.batch_size, lr=args.fp_lr,
                           schedule="cosine",
                           weight_decay=args.weight_decay, steps_per_epoch=args.steps_per_epoch,
                           compile=args.compile)
        from methods import method_class

        if method_class(args.method).kind == "ptq":
            recipe = fp_recipe  # a post-training run trains nothing: it carries its parent's recipe
        spec = RunSpec(task=task, arch=args.arch, method=args.method, recipe=recipe, w_bits=w_bits,
                       a_bits=a_bits, seed=args.seed, hparams=parse_hparams(args.hparam), layer_policy=policy,
                       fp_recipe=None if args.method == "fp" else fp_recipe)
        from benchmarks.run.validate import validate_spec

        validate_spec(spec)
        check_device(args.device)
        check_output_dir(args.output)
    except ValueError as err:
        return fail(str(err))
    output = Path(args.output)
    parent = spec.parent()
    try:
        if parent is not None:
            run(parent, output, data_root=args.data_root, device=args.device)
        result = run(spec, output, data_root=args.data_root, device=args.device)
    except OSError as err:  # read-only or full disk mid-run: the run's failed.json has the traceback
        print(f"error: run {spec.run_id} stopped: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: run {spec.run_id} recorded as interrupted; run the same command to resume",
              file=sys.stderr)
        return 130
    assert result is not None  # run() returns None only when max_epochs stops it early
    print(json.dumps({"run_id": spec.run_id, "top1_last": result.metrics.top1_last,
                      "top1_best": result.metrics.top1_best}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
