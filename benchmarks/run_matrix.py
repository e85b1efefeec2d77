#!/usr/bin/env python
"""Run a benchmark grid: datasets × architectures × methods × W/A bits × seeds.

  python benchmarks/run_matrix.py --grid longtail --dry-run          # what would run, and its cost
  python benchmarks/run_matrix.py --grid demo                         # run it here (CPU or one GPU box)
  python benchmarks/run_matrix.py --grid longtail --launcher slurm --slurm-profile mycluster
  python benchmarks/run_matrix.py --grid longtail --status            # progress, read from disk

Grids live in benchmarks/grids/*.yaml (or pass a path). Every run has a directory
<output>/runs/<run_id> whose files are the truth about it; launching again runs only what is not done,
and interrupted runs resume from their last checkpoint. Each QAT run starts once its own FP parent is done;
a failed FP parent holds back only its own QAT runs (reported as blocked, with the parent's error).
After launching, finished runs are synced into MLflow (sqlite in the output directory by default).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import fail  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True,
                   help="grid name (smoke, demo, standard, multidomain, longtail) or YAML path")
    p.add_argument("--profile", default="full", help="recipe profile: full (the papers' recipes) | quick")
    for axis in ("methods", "datasets", "archs", "bits", "seeds"):
        p.add_argument(f"--{axis}", default=None, help=f"comma-separated subset of the grid's {axis}")
    p.add_argument("--launcher", default="local", help="debug (in-process) | local (subprocesses) | slurm")
    p.add_argument("--workers", type=int, default=1,
                   help="local launcher: runs at once (one GPU each if any)")
    p.add_argument("--slurm-profile", default="local", help="slurm/profiles/<name>.yaml or a path")
    p.add_argument("--runs-per-gpu", type=int, default=1,
                   help="pack this many runs into one job, as concurrent processes sharing its GPU "
                   "(slurm: default from the profile's runs_per_gpu)")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return without monitoring")
    p.add_argument("--output", default=None, help="output directory (default outputs/<grid name>)")
    p.add_argument("--hparams", default="default",
                   help="default | tuned (frozen Optuna results, see docs/tuning.md)")
    p.add_argument("--tuned-dir", default=None,
                   help="where frozen tuned files live (default benchmarks/hparams/tuned)")
    p.add_argument("--data-root", default=None, help="data directory (default $QBENCH_DATA_ROOT or ./data)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, counts by state and a GPU-hour estimate")
    p.add_argument("--status", action="store_true",
                   help="counts by state; blocked runs (FP parent failed) and failed runs, with the reason")
    p.add_argument("--delete-incomplete", action="store_true",
                   help="delete run directories that are neither done nor running (never a finished run)")
    p.add_argument("--no-sync", action="store_true", help="do not sync finished runs into MLflow")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite in output)")
    return p


def _csv(value: str | None, cast=str) -> tuple | None:
    return None if value is None else tuple(cast(v.strip()) for v in value.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.launch.registry import get_launcher
    from benchmarks.matrix.expand import Filters, expand, states
    from benchmarks.matrix.grids import PROFILES, load_grid

    try:
        if args.profile not in PROFILES:
            raise ValueError(f"unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}")
        get_launcher(args.launcher)
        if args.runs_per_gpu < 1:
            raise ValueError(f"invalid --runs-per-gpu {args.runs_per_gpu}; expected an integer >= 1")
        if args.hparams not in ("default", "tuned"):
            raise ValueError(f"unknown --hparams {args.hparams!r}; valid: default, tuned")
        grid = load_grid(args.grid)
        filters = Filters(_csv(args.methods), _csv(args.datasets), _csv(args.archs), _csv(args.bits),
                          _csv(args.seeds, int))
        provenance: dict[str, dict] = {}
        specs = expand(grid, args.profile, filters, _tuned_lookup(args) if args.hparams == "tuned" else None,
                       provenance)
    except ValueError as err:
        return fail(str(err))
    output = Path(args.output or f"outputs/{grid.name}")
    from benchmarks.matrix.status import delete_incomplete, print_runs, progress_line

    if args.dry_run or args.status:
        print_runs(specs, output, show_all=args.dry_run)
        return 0
    if args.delete_incomplete:
        deleted = delete_incomplete(specs, output)
        print(f"deleted {deleted} incomplete or failed run directories (done and running runs untouched)")
        return 0
    from benchmarks.matrix.launch import GridLaunch, launch_runs

    print(f"grid {grid.name} ({args.profile}): {len(specs)} runs -> {output}")
    print(progress_line(specs, output), flush=True)
    report = launch_runs(specs, args.launcher, GridLaunch(
        output=output, grid=grid.name, data_root=args.data_root, device=args.device, workers=args.workers,
        slurm_profile=args.slurm_profile, runs_per_gpu=args.runs_per_gpu, wait=not args.no_wait,
        provenance=provenance))
    print(f"launched {len(report.launched)}, already done or running {len(report.skipped)}, "
          f"failed {len(report.failed)}, blocked by a failed or running FP parent {len(report.blocked)}")
    for run_id, reason in report.blocked.items():
        print(f"  blocked {run_id}: {reason}")
    print(progress_line(specs, output))
    if not args.no_sync:
        from benchmarks.tracking.mlflow_sync import sync_runs

        counts = sync_runs(output, args.tracking_uri, grid.name)
        print(f"MLflow sync: {counts}")
    final = states(specs, output)
    return 0 if all(s.value == "done" for s in final.values()) or args.no_wait else 1


def _tuned_lookup(args):
    from benchmarks.tuning.frozen import load_tuned

    return lambda method, task, arch, w, a: load_tuned(method, task, arch, w, a, root=args.tuned_dir)


if __name__ == "__main__":
    sys.exit(main())
