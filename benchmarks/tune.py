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
  python benchmarks/tune.py ... --launcher local --workers 2       # two worker processes share the study
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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import fail, parse_bits, parse_hparams, parse_layer_policy  # noqa: E402
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec  # noqa: E402
from benchmarks.tuning.search_spaces import SAMPLERS, parse_range, search_space  # noqa: E402

# the study and trial API, importable from here too (tests, notebooks): benchmarks.tune is the tuning entry point
from benchmarks.tuning.study import Log, TuneOptions, ensure_parent, load_study, prepare_study  # noqa: E402
from benchmarks.tuning.trials import fail_stale, remaining, run_trial  # noqa: E402

LAUNCHERS = ("local", "slurm", "debug")
TUNE_PY = Path(__file__).resolve()


def continue_study(study, options: TuneOptions, launcher: str = "local", workers: int = 1,
                   slurm_profile: str = "local", log: Log = print) -> dict[str, Any]:
    """Run trials until the study has ``n_trials`` (plus retries of dead ones); returns a summary.

    Rounds: fail stale trials, launch what remains, wait. A worker that dies leaves its trial RUNNING only
    until the next round (or the next worker's ask) fails it and queues the retry.
    """
    if launcher == "slurm":  # the login node only submits; a job failure raises here
        executor = _executor(options, launcher, slurm_profile)
        executor.submit(_job("parent_job"), str(options.output), options.name, options.storage).result()
    else:
        ensure_parent(options, log)
    ended: set[str] = set()
    fail_stale(study, options, ended, log)
    # Each round finishes >= 1 trial (or raises), and at most n_trials * (1 + max_retries) trials exist.
    for _ in range(options.n_trials * (options.max_retries + 1) + 1):
        todo = remaining(study, options.n_trials)
        if todo == 0:
            break
        done_before = _finished(study)
        if launcher == "local" and workers == 1:
            for _ in range(todo):
                run_trial(study, options, ended, log)
        elif launcher == "local":
            _run_processes(options, min(workers, todo), todo)
        else:
            executor = _executor(options, launcher, slurm_profile)
            jobs = [executor.submit(_job("trial_job"), str(options.output), options.name, options.storage)
                    for _ in range(todo)]
            for job in jobs:
                _wait(job, log)
            ended |= {str(job.job_id) for job in jobs}
        fail_stale(study, options, ended, log)  # the round's dead workers count as progress: retries queued
        if _finished(study) == done_before:
            raise RuntimeError(f"a round of {todo} trial(s) finished none; see the logs in "
                               f"{options.study_dir}")
    from benchmarks.tuning.frozen import study_summary

    return study_summary(study)


def _job(name: str):
    """Job functions are pickled by reference: take them from ``benchmarks.tune``, never from ``__main__``
    (the CLI), which a job's Python could not import."""
    import benchmarks.tune as module

    return getattr(module, name)


def _finished(study) -> int:
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def _run_processes(options: TuneOptions, workers: int, todo: int) -> None:
    """``workers`` processes of ``tune.py --worker`` sharing ``todo`` trials, each logging to a file."""
    logs = options.study_dir / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for index in range(workers):
        count = todo // workers + (index < todo % workers)
        cmd = [sys.executable, str(TUNE_PY), "--worker", "--output", str(options.output), "--study-name",
               options.name, "--trials", str(count)]
        cmd += ["--storage", options.storage] if options.storage else []
        with open(logs / f"worker-{int(time.time())}-{index}.log", "w") as out:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
    for proc in procs:
        proc.wait()


def _executor(options: TuneOptions, launcher: str, slurm_profile: str):
    folder = options.study_dir / "submitit" / "%j"
    if launcher == "debug":
        import submitit

        return submitit.AutoExecutor(folder=folder, cluster="debug")
    from benchmarks.launch.profiles import load_slurm_profile, make_executor

    return make_executor(load_slurm_profile(slurm_profile), folder, cluster="slurm",
                         name=f"tune-{options.name}")


def _wait(job, log: Log) -> None:
    try:
        job.result()
    except Exception as err:  # the job died: its trial is failed as stale at the end of the round
        log(f"[tune] job {job.job_id} failed: {str(err).strip().splitlines()[-1:] or err}")


def run_worker(output: Path, study_name: str, storage: str | None, trials: int) -> int:
    """A worker process: up to ``trials`` trials of an existing study."""
    study, options = load_study(output, study_name, storage)
    for _ in range(trials):
        if run_trial(study, options) is None:
            break
    return 0


def trial_job(output: str, study_name: str, storage: str | None) -> str | None:
    """One SLURM/debug job = one trial: load the study, ask, train, tell."""
    from benchmarks.run.termination import stop_on_sigterm

    stop_on_sigterm()
    study, options = load_study(Path(output), study_name, storage)
    return run_trial(study, options)


def parent_job(output: str, study_name: str, storage: str | None) -> None:
    _, options = load_study(Path(output), study_name, storage)
    ensure_parent(options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    run.add_argument("--launcher", default="local", choices=LAUNCHERS,
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
            from benchmarks.launch.profiles import load_slurm_profile

            load_slurm_profile(args.slurm_profile)  # a bad profile fails here, before anything runs
        study = prepare_study(options, [parse_hparams(item.split(",")) for item in args.enqueue])
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    summary = continue_study(study, options, launcher=args.launcher, workers=args.workers,
                             slurm_profile=args.slurm_profile)
    if not args.no_mlflow:
        from benchmarks.tracking.mlflow_sync import sync_optuna_study

        summary["mlflow"] = sync_optuna_study(study, args.tracking_uri)
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
