#!/usr/bin/env python
"""Run a benchmark grid: datasets × architectures × methods × W/A bits × seeds.

  python benchmarks/run_matrix.py --grid longtail --dry-run          # what would run, and its cost
  python benchmarks/run_matrix.py --grid demo                         # run it here (CPU or one GPU box)
  python benchmarks/run_matrix.py --grid longtail --launcher slurm --slurm-profile mycluster
  python benchmarks/run_matrix.py --grid longtail --status            # progress, read from disk

Grids live in benchmarks/grids/*.yaml (or pass a path). Every run has a directory
<output>/runs/<run_id> whose files are the truth about it; launching again runs only what is not done,
and interrupted runs resume from their last checkpoint. FP runs go first; QAT runs start from them.
After launching, finished runs are synced into MLflow (sqlite in the output directory by default).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import fail  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="grid name (smoke, demo, standard, multidomain, longtail) or YAML path")
    p.add_argument("--profile", default="full", help="recipe profile: full (the papers' recipes) | quick")
    for axis in ("methods", "datasets", "archs", "bits", "seeds"):
        p.add_argument(f"--{axis}", default=None, help=f"comma-separated subset of the grid's {axis}")
    p.add_argument("--launcher", default="local", help="debug (in-process) | local (subprocesses) | slurm")
    p.add_argument("--workers", type=int, default=1, help="local launcher: runs at once (one GPU each if any)")
    p.add_argument("--slurm-profile", default="local", help="slurm/profiles/<name>.yaml or a path")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return without monitoring")
    p.add_argument("--output", default=None, help="output directory (default outputs/<grid name>)")
    p.add_argument("--hparams", default="default", help="default | tuned (frozen Optuna results, see docs/tuning.md)")
    p.add_argument("--tuned-dir", default=None, help="where frozen tuned files live (default benchmarks/hparams/tuned)")
    p.add_argument("--data-root", default=None, help="data directory (default $QBENCH_DATA_ROOT or ./data)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dry-run", action="store_true", help="list the runs, counts by state and a GPU-hour estimate")
    p.add_argument("--status", action="store_true", help="counts by state, and failed runs with their error")
    p.add_argument("--delete-incomplete", action="store_true",
                   help="delete run directories that are neither done nor running (never a finished run)")
    p.add_argument("--no-sync", action="store_true", help="do not sync finished runs into MLflow")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite in output)")
    return p


def _csv(value: str | None, cast=str) -> tuple | None:
    return None if value is None else tuple(cast(v.strip()) for v in value.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.launch.launchers import LAUNCHERS
    from benchmarks.matrix.expand import Filters, expand, states
    from benchmarks.matrix.grids import PROFILES, load_grid

    try:
        if args.profile not in PROFILES:
            raise ValueError(f"unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}")
        if args.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {args.launcher!r}; valid: {', '.join(LAUNCHERS)}")
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
    current = states(specs, output)
    if args.dry_run or args.status:
        _print_runs(specs, current, output, show_all=args.dry_run)
        return 0
    if args.delete_incomplete:
        return _delete_incomplete(specs, current, output)
    from benchmarks.launch.launchers import LaunchOptions, launch, progress_line

    print(f"grid {grid.name} ({args.profile}): {len(specs)} runs -> {output}")
    print(progress_line(specs, output), flush=True)
    report = launch(specs, args.launcher, LaunchOptions(
        output=output, grid=grid.name, data_root=args.data_root, device=args.device, workers=args.workers,
        slurm_profile=args.slurm_profile, wait=not args.no_wait, provenance=provenance))
    print(f"launched {len(report.launched)}, already done or running {len(report.skipped)}, "
          f"blocked by an unfinished FP parent {len(report.blocked)}")
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


def _print_runs(specs, current, output: Path, show_all: bool) -> None:
    from benchmarks.matrix.cost import ASSUMED_IMAGES_PER_S, gpu_hours
    from benchmarks.run.labels import bits_label
    from benchmarks.run.rundir import RunDir

    if show_all:
        print(f"{'run_id':16}  {'state':12}  {'method':8}  {'bits':6}  {'task':30}  {'arch':18}  seed")
        for spec in specs:
            print(f"{spec.run_id:16}  {current[spec.run_id].value:12}  {spec.method:8}  {bits_label(spec.w_bits, spec.a_bits, spec.method):6}  "
                  f"{spec.task.label:30}  {spec.arch:18}  {spec.seed}")
    counts = Counter(state.value for state in current.values())
    print("runs by state: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" (total {len(specs)})")
    for spec in specs:
        failure = RunDir.of(output, spec.run_id).read_failure() if current[spec.run_id].value == "failed" else None
        if failure is not None:
            print(f"  failed {spec.run_id}: {str(failure.get('error'))[:200]}")
    remaining = [s for s in specs if current[s.run_id].value != "done"]
    hours = sum(gpu_hours(s) for s in remaining)
    print(f"estimated GPU-hours for the {len(remaining)} runs not done: {hours:.1f} (assumed FP fp32 "
          f"images/s per arch: {ASSUMED_IMAGES_PER_S}; QAT step x FP measured per method on an H100 at "
          "ResNet-20 size, an upper bound for larger models; see benchmarks/matrix/cost.py)")


def _delete_incomplete(specs, current, output: Path) -> int:
    from benchmarks.run.rundir import RunDir

    deleted = 0
    for spec in specs:
        if current[spec.run_id].value in ("incomplete", "failed"):
            shutil.rmtree(RunDir.of(output, spec.run_id).path)
            deleted += 1
    print(f"deleted {deleted} incomplete or failed run directories (done and running runs untouched)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
