#!/usr/bin/env python
"""Soak test of the SLURM launcher: a grid of short runs launched while faults are injected, then checked.

  python slurm/soak.py --size long --work /tmp/soak      # 61 runs, 3 faults of each kind
  python slurm/soak.py --size short --per-kind 1        # 16 runs (as tests/launch/test_soak_slurm.py)

Needs the local test cluster (bash slurm/cluster.sh up). Faults: scancel and scontrol requeue of running jobs,
the node drained for a few seconds, the launcher SIGKILLed and started again, a second launcher on the same
output, concurrent MLflow syncs; one run diverges by design. Prints runs, faults by kind, lost, duplicated,
mismatched (against a fault-free launch of the same grid) and the wall time; exit 0 only when none is lost,
duplicated or mismatched. See docs/operations.md, "Soak test".
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import fail  # noqa: E402

SIZES = ("short", "long")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="long", help="short (16 runs) | long (61 runs)")
    p.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--per-kind", type=int, default=3, help="faults of each kind")
    p.add_argument("--every", type=float, default=4.0, help="seconds between faults")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    p.add_argument("--slurm-profile", default="local", help="slurm/profiles/<name>.yaml or a path")
    args = p.parse_args(argv)
    if args.size not in SIZES:
        return fail(f"unknown --size {args.size!r}; valid: {', '.join(SIZES)}")
    if args.per_kind < 1:
        return fail(f"invalid --per-kind {args.per_kind}; valid: an integer >= 1")
    from benchmarks.launch.soak.driver import SoakConfig, run_soak
    from benchmarks.launch.soak.grid import LONG, SHORT

    work = Path(args.work or tempfile.mkdtemp(prefix="qbench-soak-"))
    print(f"soak working directory: {work}", flush=True)
    report = run_soak(SoakConfig(size=SHORT if args.size == "short" else LONG, work=work, seed=args.seed,
                                 per_kind=args.per_kind, every_s=args.every, slurm_profile=args.slurm_profile,
                                 log=lambda line: print(line, flush=True)))
    print("\n".join(report.lines()))
    return 0 if report.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
