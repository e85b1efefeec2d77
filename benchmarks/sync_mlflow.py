#!/usr/bin/env python
"""Copy finished run directories into MLflow (a derived view; the run directories stay the truth).

Every DONE run under <output>/runs/ becomes exactly one MLflow run, found again by its run id on the next
sync, so running this twice adds nothing. FAILED runs appear with status=failed and their error, and are
updated in place once they finish. Only this command writes to MLflow: jobs never do.

Examples:
  python benchmarks/sync_mlflow.py --output outputs/demo                 # -> sqlite:///outputs/demo/mlflow.db
  mlflow ui --backend-store-uri sqlite:///outputs/demo/mlflow.db        # then browse it
  python benchmarks/sync_mlflow.py --output outputs/demo --tracking-uri http://127.0.0.1:5000
The tracking URI defaults to $MLFLOW_TRACKING_URI, else sqlite:///<output>/mlflow.db.
The experiment defaults to each run's grid name (else "qbench").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import OneLineParser, fail  # noqa: E402
from benchmarks.cli.checks import check_tracking_uri, tracking_uri_in_use  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="output directory holding runs/<run_id>/")
    p.add_argument("--tracking-uri", default=None,
                   help="sqlite:///PATH, postgresql://..., or http://HOST:PORT (default: see above)")
    p.add_argument("--experiment", default=None, help="one experiment for all runs (default: each grid's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    from benchmarks.run.rundir import run_dirs, runs_root

    if not runs_root(output).is_dir():
        return fail(f"--output {str(output)!r} has no runs/ directory (expected {runs_root(output)})")
    try:
        check_tracking_uri(*tracking_uri_in_use(args.tracking_uri))
    except ValueError as err:
        return fail(str(err))
    from benchmarks.tracking.mlflow_sync import DEFAULT_EXPERIMENT, experiment_page, sync_runs

    try:
        counts = sync_runs(output, args.tracking_uri, args.experiment)
    except ValueError as err:
        return fail(str(err))
    print(json.dumps(counts))
    names = {args.experiment} if args.experiment else {(d.read_spec() or {}).get("grid") or DEFAULT_EXPERIMENT
                                                       for d in run_dirs(output) if d.spec_path.exists()}
    for name in sorted(names):
        page = experiment_page(output, args.tracking_uri, name)
        if page is not None:
            print(f"{name}: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
