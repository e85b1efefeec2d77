#!/usr/bin/env python
"""Run a benchmark grid: datasets × architectures × methods × W/A bits × seeds.

  python benchmarks/run_matrix.py --grid longtail --dry-run          # what would run, and its cost
  python benchmarks/run_matrix.py --grid demo                         # run it here (CPU or one GPU box)
  python benchmarks/run_matrix.py --grid longtail --launcher slurm --slurm-profile mycluster
  python benchmarks/run_matrix.py --grid longtail --status            # progress, read from disk
  python benchmarks/run_matrix.py --grid longtail --logs 3f2a --follow  # tail one run's log.txt

Grids live in benchmarks/grids/*.yaml (or pass a path). Every run has a directory
<output>/runs/<run_id> whose files are the truth about it; launching again runs only what is not done,
and interrupted runs resume from their last checkpoint. Each QAT run starts once its own FP parent is done;
a failed FP parent holds back only its own QAT runs (reported as blocked, with the parent's error).
After launching, finished runs are synced into MLflow (sqlite in the output directory by default).
While it runs, a live view shows pending/running/done/failed counts, each running run's epoch and an ETA
(plain lines when stdout is not a terminal). Ctrl-C stops the workers, records their runs as interrupted,
and the same command resumes them.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli import checks  # noqa: E402
from benchmarks.cli.args import OneLineParser, fail  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--logs", default=None, metavar="RUN_ID",
                   help="print runs/<run_id>/log.txt of this run (an id or a unique prefix) and exit")
    p.add_argument("--follow", action="store_true", help="with --logs: keep printing while the run runs")
    p.add_argument("--view", default="auto", choices=("auto", "live", "plain"),
                   help="progress display: live bars on a terminal, plain lines otherwise (auto)")
    return p


def _csv(value: str | None, cast=str) -> tuple | None:
    return None if value is None else tuple(cast(v.strip()) for v in value.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.launch.registry import get_launcher
    from benchmarks.matrix.expand import Filters, expand
    from benchmarks.matrix.grids import PROFILES, load_grid

    try:
        if args.profile not in PROFILES:
            raise ValueError(f"unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}")
        get_launcher(args.launcher)
        if args.runs_per_gpu < 1:
            raise ValueError(f"invalid --runs-per-gpu {args.runs_per_gpu}; expected an integer >= 1")
        if args.hparams not in ("default", "tuned"):
            raise ValueError(f"unknown --hparams {args.hparams!r}; valid: default, tuned")
        if args.follow and not args.logs:
            raise ValueError("--follow needs --logs RUN_ID")
        grid = load_grid(args.grid)
        output = Path(args.output or f"outputs/{grid.name}")
        if args.logs is not None:
            from benchmarks.matrix.logs import find_run

            directory = find_run(output, args.logs)
        else:
            filters = Filters(_csv(args.methods), _csv(args.datasets), _csv(args.archs), _csv(args.bits),
                              _csv(args.seeds, int))
            provenance: dict[str, dict] = {}
            specs = expand(grid, args.profile, filters,
                           _tuned_lookup(args) if args.hparams == "tuned" else None, provenance)
            if not (args.dry_run or args.status or args.delete_incomplete):
                check_launch(args, output)
    except ValueError as err:
        return fail(str(err))
    if args.logs is not None:
        from benchmarks.matrix.logs import print_log

        return print_log(directory, follow=args.follow)
    from benchmarks.matrix.status import delete_incomplete, print_runs

    if args.dry_run or args.status:
        from benchmarks.matrix.launch import GridLaunch, runs_per_gpu_of

        try:  # the estimate packs runs as the launch would (--runs-per-gpu or the SLURM profile's)
            packing = runs_per_gpu_of(args.launcher, GridLaunch(output=output, grid=grid.name,
                                      runs_per_gpu=args.runs_per_gpu, slurm_profile=args.slurm_profile))
        except (ValueError, OSError) as err:  # a missing or bad SLURM profile: one line, as a launch says
            return fail(str(err))
        print_runs(specs, output, show_all=args.dry_run, runs_per_gpu=packing)
        return 0
    if args.delete_incomplete:
        deleted = delete_incomplete(specs, output)
        print(f"deleted {deleted} incomplete or failed run directories (done and running runs untouched)")
        return 0
    stop_on_termination()
    try:
        return launch(args, grid.name, specs, output, provenance)
    except KeyboardInterrupt:
        return interrupted(args, grid.name, argv)


def stop_on_termination() -> None:
    """SIGTERM and SIGHUP (``kill``, a closed terminal, the end of the job the launcher itself runs in) stop
    a launch as Ctrl-C does: the workers are stopped, their runs recorded as interrupted, the resume command
    printed. Without this the launcher would die alone and leave its local workers training, unwatched."""
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for name in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(name, stop)


def check_launch(args: argparse.Namespace, output: Path) -> None:
    """What a launch needs beyond a valid grid, checked before any run starts (ValueError, one line)."""
    checks.check_int("--workers", args.workers, 1)
    checks.check_device(args.device)
    if args.launcher == "slurm":
        checks.check_slurm_profile(args.slurm_profile)
    checks.check_output_dir(output)
    if not args.no_sync:
        checks.check_tracking_uri(*checks.tracking_uri_in_use(args.tracking_uri))


def launch(args: argparse.Namespace, grid: str, specs: list, output: Path, provenance: dict) -> int:
    from benchmarks.matrix.expand import states
    from benchmarks.matrix.launch import GridLaunch, launch_runs
    from benchmarks.matrix.progress import Monitor, make_view, take_snapshot

    print(f"grid {grid} ({args.profile}): {len(specs)} runs -> {output}", flush=True)
    monitor = None
    if args.launcher != "slurm" or not args.no_wait:  # something to watch
        view = make_view(len(specs), live=None if args.view == "auto" else args.view == "live")
        monitor = Monitor(lambda: take_snapshot(specs, output, args.workers), view,
                          interval_s=1.0 if args.view == "live" or sys.stdout.isatty() else 2.0).start()
    try:
        report = launch_runs(specs, args.launcher, GridLaunch(
            output=output, grid=grid, data_root=args.data_root, device=args.device, workers=args.workers,
            slurm_profile=args.slurm_profile, runs_per_gpu=args.runs_per_gpu, wait=not args.no_wait,
            provenance=provenance,
            log=monitor.message if monitor else print, progress_lines=False))
    finally:
        if monitor is not None:
            monitor.stop()
    print(f"launched {len(report.launched)}, already done or running {len(report.skipped)}, "
          f"failed {len(report.failed)}, blocked by a failed or running FP parent {len(report.blocked)}")
    for run_id, reason in report.failed.items():
        print(f"  failed {run_id}: {reason}")
    for run_id, reason in report.blocked.items():
        print(f"  blocked {run_id}: {reason}")
    if not args.no_sync:
        from benchmarks.tracking.mlflow_sync import experiment_page, sync_runs

        # each run goes to the experiment of the grid that first launched it (its spec.json), as with
        # sync_mlflow.py: this sync copies every run of the output, also other grids' runs sharing it
        counts = sync_runs(output, args.tracking_uri)
        print(f"MLflow sync: {counts}")
        print(experiment_page(output, args.tracking_uri, grid) or "")
    final = states(specs, output)
    return 0 if all(s.value == "done" for s in final.values()) or args.no_wait else 1


def interrupted(args: argparse.Namespace, grid: str, argv: list[str] | None) -> int:
    """After Ctrl-C: one line on how to go on (the workers were stopped and their runs recorded by then)."""
    import shlex

    from benchmarks.matrix.launch import job_name

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    if args.launcher == "slurm":
        print(f"interrupted: stopped watching; the SLURM jobs go on (scancel --name {job_name(grid)} stops "
              f"them); watch again with: {command}", file=sys.stderr)
    else:
        print(f"interrupted: the runs in progress were stopped and recorded as interrupted; resume with: "
              f"{command}", file=sys.stderr)
    return 130


def _tuned_lookup(args):
    from benchmarks.tuning.frozen import load_tuned

    return lambda method, task, arch, w, a: load_tuned(method, task, arch, w, a, root=args.tuned_dir)


if __name__ == "__main__":
    sys.exit(main())
