#!/usr/bin/env python
"""Tune one (method, task, arch, bits) cell with Optuna; optionally freeze the best params for the matrix.

Each trial is an ordinary run directory (<output>/tuning/<study>/runs/<run_id>, same records as matrix runs)
that trains on the training split and is judged on the validation split only: the test split is never
evaluated. A median pruner stops trials whose per-epoch validation accuracy falls below the median of the
finished ones. Searched: lr and weight decay (log-uniform) plus the method's own `search_space`.

Examples (offline, CPU):
  python benchmarks/tune.py --method lsq --dataset mnist --arch dann_digits --bits 4/4 --trials 8 \\
      --epochs 3 --steps-per-epoch 20 --freeze
  python benchmarks/tune.py --grid smoke --profile quick --method lsq --dataset optdigits \\
      --arch dann_digits --bits 4/4 --freeze    # the base run is the grid's cell, as run_matrix.py runs it
  python benchmarks/tune.py ... --arch-option dropout=0.25 --first-last 8bit/fp   # without --grid
  python benchmarks/tune.py ... --launcher local --workers 2       # two trials at a time, a process each
  python benchmarks/tune.py ... --launcher slurm --slurm-profile local   # one SLURM job per trial
Running the same command again continues the study (more --trials extend it). --freeze writes
benchmarks/hparams/tuned/<method>/<task>__<arch>__w<W>a<A>.json, which `run_matrix.py --hparams tuned` reads;
it records the base run, and the matrix refuses it for a run that differs (beyond seed and searched knobs).

Storage: an Optuna journal file with an NFS-safe lock (<output>/tuning/<study>/journal.log); --storage takes
an RDB URL instead. A trial whose process died (dead pid on this host, ended SLURM job, or a run-dir
heartbeat older than --stale-after) is marked FAIL and its params re-queued, at most --max-retries times;
the retry resumes the same run directory from its last checkpoint. MLflow: after the trials, one parent run
per study with every trial nested under it (--tracking-uri, default sqlite:///<output>/mlflow.db).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli import checks  # noqa: E402
from benchmarks.cli.args import OneLineParser, fail, parse_bits, parse_hparams, parse_layer_policy  # noqa: E402
from benchmarks.launch.registry import available_launchers  # noqa: E402
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec  # noqa: E402

# The round, study and trial API, importable from here too (tests, notebooks): benchmarks.tune is the tuning
# entry point. Rounds launch trials through the launch registry (benchmarks/launch/).
from benchmarks.tuning.rounds import continue_study, parent_job, run_worker, trial_job  # noqa: E402, F401
from benchmarks.tuning.search_spaces import SAMPLERS, parse_range, search_space  # noqa: E402
from benchmarks.tuning.study import Log, TuneOptions, ensure_parent, load_study, prepare_study  # noqa: E402, F401
from benchmarks.tuning.trials import fail_stale, remaining, run_trial  # noqa: E402, F401


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cell = p.add_argument_group("what is tuned: the base run every trial varies (one study per method x task "
                                "x arch x bits)")
    cell.add_argument("--method", help="lsq | dorefa | alignq | climbq | emaq | emaq-lt | fp")
    cell.add_argument("--dataset", help="training dataset (source), e.g. mnist")
    cell.add_argument("--target", default=None, help="target domain for domain shift, e.g. mnistm-synth")
    cell.add_argument("--arch", help="architecture, e.g. dann_digits")
    cell.add_argument("--bits", default="4/4", help="W/A bits, e.g. 4/4 (ignored for fp)")
    cell.add_argument("--seed", type=int, default=None,
                      help="run seed of every trial (default 0; with --grid the grid's first seed)")
    cell.add_argument("--grid", default=None,
                      help="take the base run from this grid's cell (name or YAML path): its recipes, task "
                           "options, arch options, layer policy and method knobs, exactly as run_matrix.py "
                           "runs it, so the frozen values fit that grid; the flags below are then refused")
    cell.add_argument("--profile", default=None,
                      help="with --grid: the recipe profile, full (default) | quick")
    train = p.add_argument_group("without --grid: how each trial trains (match the matrix, or --hparams "
                                 "tuned refuses the frozen file)")
    train.add_argument("--protocol", default=None, help="standard | dann | source_only (default standard)")
    train.add_argument("--val-fraction", type=float, default=None,
                       help="validation share of the train split (default 0.1)")
    train.add_argument("--epochs", type=int, default=None, help="epochs of each trial (default 3)")
    train.add_argument("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch (quick)")
    train.add_argument("--batch-size", type=int, default=None, help="default 128")
    train.add_argument("--schedule", default=None,
                       help="multistep | cosine | constant | dann (default cosine)")
    train.add_argument("--fp-epochs", type=int, default=None,
                       help="epochs of the FP parent, trained once (default 2)")
    train.add_argument("--fp-lr", type=float, default=None, help="lr of the FP parent (default 0.05)")
    train.add_argument("--arch-option", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture option (repeatable), e.g. dropout=0.25 or pretrained=imagenet")
    train.add_argument("--first-last", default=None, metavar="FIRST/LAST",
                       help="layer policy of the first/last layer, each same|8bit|fp (default: the method's)")
    train.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed method knob (repeatable); a searched knob of the same name wins")
    search = p.add_argument_group("the search")
    search.add_argument("--trials", type=int, default=8, help="trials in the study (retries not counted)")
    search.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                        help="tpe (seeded) or random (seeded; bit-reproducible in parallel)")
    search.add_argument("--sampler-seed", type=int, default=0)
    search.add_argument("--tpe-startup", type=int, default=4, help="random trials before TPE models")
    search.add_argument("--pruner-startup", type=int, default=3, help="finished trials before pruning starts")
    search.add_argument("--pruner-warmup", type=int, default=0, help="epochs before a trial may be pruned")
    search.add_argument("--lr-range", default=None, help="LOW:HIGH of the log-uniform lr range (1e-4:0.3)")
    search.add_argument("--wd-range", default=None, help="LOW:HIGH of the weight-decay range (1e-6:1e-2)")
    search.add_argument("--enqueue", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="a first trial with these params (repeatable; e.g. lr=0.01,mu=0.2)")
    search.add_argument("--study-name", default=None, help="default <method>__<task>__<arch>__w<W>a<A>")
    run = p.add_argument_group("where and how trials run")
    run.add_argument("--launcher", default="local", choices=available_launchers(),
                     help="local (in-process, or --workers N processes), slurm (a job per trial), debug")
    run.add_argument("--workers", type=int, default=1, help="local: worker processes (1: in-process)")
    run.add_argument("--slurm-profile", default="local", help="slurm/profiles/<name>.yaml or a path")
    run.add_argument("--output", default="outputs/tune", help="output dir (tuning/<study>/ inside)")
    run.add_argument("--storage", default=None, help="Optuna RDB URL instead of the journal file")
    run.add_argument("--stale-after", type=float, default=900.0, help="seconds without a heartbeat: dead")
    run.add_argument("--max-retries", type=int, default=2, help="re-runs of a trial whose process died")
    run.add_argument("--data-root", default=None)
    run.add_argument("--device", default="auto")
    out = p.add_argument_group("results")
    out.add_argument("--freeze", action="store_true", help="write the best params to the frozen-hparams file")
    out.add_argument("--hparams-dir", default=None, help="root of frozen files (benchmarks/hparams/tuned)")
    out.add_argument("--tracking-uri", default=None, help="MLflow URI (default sqlite:///<output>/mlflow.db)")
    out.add_argument("--no-mlflow", action="store_true", help="skip the MLflow sync")
    # internal: a worker process of --launcher local --workers N
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


# The flags that spell the base run by hand, with their defaults; None in argparse means "not given", so
# --grid can refuse them (the grid's cell already says all of it).
FLAG_DEFAULTS: dict[str, Any] = {"protocol": "standard", "val_fraction": 0.1, "epochs": 3, "batch_size": 128,
                                 "schedule": "cosine", "fp_epochs": 2, "fp_lr": 0.05, "steps_per_epoch": None,
                                 "arch_option": [], "first_last": None, "hparam": []}


def options_from_args(args: argparse.Namespace) -> TuneOptions:
    """Validate the command line into TuneOptions (ValueError with a one-line message on bad input)."""
    for name in ("method", "dataset", "arch"):
        if not getattr(args, name):
            raise ValueError(f"--{name} is required")
    if args.trials < 1 or args.workers < 1 or args.max_retries < 0:
        raise ValueError("--trials and --workers must be >= 1, --max-retries >= 0")
    base = _grid_base(args) if args.grid else _flag_base(args)
    overrides = {}
    if args.lr_range:
        overrides["lr"] = parse_range(args.lr_range)
    if args.wd_range:
        overrides["weight_decay"] = parse_range(args.wd_range)
    options = TuneOptions(
        base=base, space=search_space(base.method, overrides), sampler=args.sampler,
        sampler_seed=args.sampler_seed, tpe_startup=args.tpe_startup, pruner_startup=args.pruner_startup,
        pruner_warmup=args.pruner_warmup, n_trials=args.trials, output=Path(args.output),
        storage=args.storage, study_name=args.study_name, stale_after_s=args.stale_after,
        max_retries=args.max_retries, data_root=args.data_root, device=args.device)
    options.validate()  # before the slurm profile is checked: the cell is the likelier typo
    checks.check_float("--stale-after", args.stale_after, 0.0)
    checks.check_device(args.device)
    checks.check_storage_url(args.storage)
    checks.check_output_dir(args.output)
    if not args.no_mlflow:
        checks.check_tracking_uri(*checks.tracking_uri_in_use(args.tracking_uri))
    return options


def _grid_base(args: argparse.Namespace) -> RunSpec:
    from benchmarks.matrix.grids import PROFILES
    from benchmarks.tuning.grid_cell import grid_cell_spec

    given = [name for name, default in FLAG_DEFAULTS.items() if getattr(args, name) not in (None, [])]
    if given:
        raise ValueError(f"--{given[0].replace('_', '-')} cannot be combined with --grid (the grid's cell is "
                         "the base run); choose --profile, or spell the run with flags instead of --grid")
    profile = args.profile or "full"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return grid_cell_spec(args.grid, profile, args.method, args.dataset, args.target, args.arch,
                          args.bits, args.seed)


def _flag_base(args: argparse.Namespace) -> RunSpec:
    if args.profile is not None:
        raise ValueError("--profile needs --grid (it picks the grid's recipes); without --grid, spell the "
                         "recipe with --epochs, --batch-size, ...")
    flags = {name: default if getattr(args, name) is None else getattr(args, name)
             for name, default in FLAG_DEFAULTS.items()}
    w_bits, a_bits = (32, 32) if args.method == "fp" else parse_bits(args.bits)
    recipe = Recipe(epochs=flags["epochs"], batch_size=flags["batch_size"], schedule=flags["schedule"],
                    steps_per_epoch=flags["steps_per_epoch"])
    fp_recipe = Recipe(epochs=flags["fp_epochs"], batch_size=flags["batch_size"], lr=flags["fp_lr"],
                       schedule="cosine", steps_per_epoch=flags["steps_per_epoch"])
    return RunSpec(task=TaskSpec(args.dataset, args.target, flags["protocol"], flags["val_fraction"]),
                   arch=args.arch, method=args.method, recipe=recipe, w_bits=w_bits, a_bits=a_bits,
                   seed=0 if args.seed is None else args.seed, hparams=parse_hparams(flags["hparam"]),
                   layer_policy=parse_layer_policy(flags["first_last"]),
                   fp_recipe=None if args.method == "fp" else fp_recipe,
                   arch_options=parse_hparams(flags["arch_option"], "architecture option"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return run_worker(Path(args.output), args.study_name, args.storage, args.trials)
    try:
        options = options_from_args(args)
        if args.launcher == "slurm":
            checks.check_slurm_profile(args.slurm_profile)  # a bad profile fails here, before anything runs
        study = prepare_study(options, [parse_hparams(item.split(",")) for item in args.enqueue])
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    summary = continue_study(study, options, launcher=args.launcher, workers=args.workers,
                             slurm_profile=args.slurm_profile)
    if not args.no_mlflow:
        from benchmarks.tracking.mlflow_sync import experiment_page, sync_optuna_study

        summary["mlflow"] = sync_optuna_study(study, args.tracking_uri)
        summary["mlflow_page"] = experiment_page(Path(args.output), args.tracking_uri, "qbench-tuning")
    if args.freeze:
        from benchmarks.tuning.frozen import freeze_best

        try:
            summary["frozen"] = str(freeze_best(study, args.hparams_dir))
        except ValueError as err:
            return fail(str(err))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
