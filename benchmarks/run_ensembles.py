#!/usr/bin/env python
"""Evaluate a grid's ensembles (EoQ: five QT-DoG runs per trial, softmax-averaged) from their finished
members.

  python benchmarks/run_matrix.py --grid domaingen --profile quick --methods eoq   # trains the members
  python benchmarks/run_ensembles.py --grid domaingen --profile quick              # evaluates the ensembles
  python -m analysis.domainbed outputs/domaingen                                   # the DomainBed tables

Each ensemble gets its own run directory <output>/runs/<run_id> (spec, metrics, result, done), so tables and
MLflow read it like any run. Ensembles whose members are not all done are listed and skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import fail  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="grid name (e.g. domaingen) or YAML path")
    p.add_argument("--profile", default="full", help="recipe profile: full | quick")
    p.add_argument("--output", default=None, help="output directory (default outputs/<grid name>)")
    p.add_argument("--data-root", default=None, help="data directory (default $QBENCH_DATA_ROOT or ./data)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.matrix.expand import Filters, expand
    from benchmarks.matrix.grids import GridError, load_grid
    from benchmarks.run.ensemble import ENSEMBLES, ensemble_cells, evaluate_ensemble
    from benchmarks.run.rundir import RunDir

    try:
        grid = load_grid(args.grid)
    except GridError as err:
        return fail(str(err))
    output = Path(args.output or f"outputs/{grid.name}")
    names = [m for m in grid.methods if m in ENSEMBLES]
    if not names:
        return fail(f"grid {grid.name!r} has no ensemble method; valid ensembles: {', '.join(ENSEMBLES)}")
    for name in names:
        members = [s for s in expand(grid, args.profile, Filters(methods=(name,)))
                   if s.method == ENSEMBLES[name].member_method]
        for cell in ensemble_cells(members):
            missing = [m.run_id for m in cell if not RunDir.of(output, m.run_id).is_done()]
            label = f"{name} {cell[0].task.label} W{cell[0].w_bits}/A{cell[0].a_bits} trial {cell[0].seed}"
            if missing:
                print(f"{label}: skipped, members not done: {', '.join(missing)}")
                continue
            result = evaluate_ensemble(output, name, cell, data_root=args.data_root, device=args.device,
                                       grid=grid.name)
            print(f"{label}: {len(cell)} members, test {result.metrics.top1_last:.2f} ({result.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
