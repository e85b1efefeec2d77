#!/usr/bin/env python
"""Tune one (method, task, arch, bits) cell with Optuna; optionally freeze the best params for the matrix.

Each trial is an ordinary run directory (<output>/tuning/<study>/runs/<run_id>, same records as matrix runs)
that trains on the training split and is judged on the validation split only: the test split is never
evaluated. A median pruner stops trials whose per-epoch validation accuracy falls below the median of the
finished ones. Searched: lr and weight decay (log-uniform) plus the method's own `search_space`.

Examples (offline, CPU):
  python benchmarks/tune.py --method lsq --dataset mnist --arch dann_digits --bits 4/4 --trials 8 \\
      --epochs 3 --steps-per-epoch 20 --freeze
  python benchmarks/tune.py ... --launcher local --workers 2       # two worker processes share the study
  python benchmarks/tune.py ... --launcher slurm --slurm-profile local   # one SLURM job per trial
Running the same command again continues the study (more --trials extend it). --freeze writes
benchmarks/hparams/tuned/<method>/<task>__<arch>__w<W>a<A>.json, which `run_matrix.py --hparams tuned` reads.

Storage: an Optuna journal file with an NFS-safe lock (<output>/tuning/<study>/journal.log); --storage takes
an RDB URL instead. A trial whose process died (dead pid on this host, ended SLURM job, or a run-dir
heartbeat older than --stale-after) is marked FAIL and its params re-queued, at most --max-retries times;
the retry resumes the same run directory from its last checkpoint. MLflow: after the trials, one parent run
per study with every trial nested under it (--tracking-uri, default sqlite:///<output>/mlflow.db).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import records  # noqa: E402
from benchmarks.cli_common import fail, parse_bits, parse_hparams  # noqa: E402
from benchmarks.search_spaces import (SAMPLERS, make_sampler, parse_range, search_space,  # noqa: E402
                                      split_params, suggest)
from benchmarks.spec import Recipe, RunSpec, TaskSpec  # noqa: E402

LAUNCHERS = ("local", "slurm", "debug")
TUNE_PY = Path(__file__).resolve()
Log = Callable[[str], None]


@dataclass
class TuneOptions:
    """One study. ``config()`` (what is searched) is stored in the study and must match on every rerun;
    ``n_trials`` and the operational fields may change between runs (more trials extend the study)."""

    method: str
    task: TaskSpec
    arch: str
    recipe: Recipe  # lr and weight_decay are replaced by each trial's values
    space: dict[str, list]
    w_bits: int = 32
    a_bits: int = 32
    seed: int = 0
    fp_recipe: Recipe | None = None  # QAT: how the FP parent (trained once per study) trains
    sampler: str = "tpe"
    sampler_seed: int = 0
    tpe_startup: int = 4
    pruner_startup: int = 3
    pruner_warmup: int = 0
    n_trials: int = 8
    output: Path = Path("outputs/tune")
    storage: str | None = None  # RDB URL; None: the journal file in the study directory
    study_name: str | None = None
    stale_after_s: float = float(records.HEARTBEAT_STALE_S)
    max_retries: int = 2
    data_root: str | None = None
    device: str = "auto"

    @property
    def name(self) -> str:
        from benchmarks.tuned import task_slug

        cell = f"{self.method}__{task_slug(self.task.label)}__{self.arch}__w{self.w_bits}a{self.a_bits}"
        return self.study_name or cell

    @property
    def study_dir(self) -> Path:
        return Path(self.output).resolve() / "tuning" / self.name

    def config(self) -> dict[str, Any]:
        spec = self.spec({})
        return {"method": self.method, "task": asdict(self.task), "arch": self.arch, "w_bits": self.w_bits,
                "a_bits": self.a_bits, "seed": self.seed, "recipe": spec.to_dict()["recipe"],
                "fp_recipe": spec.to_dict()["fp_recipe"], "space": self.space, "sampler": self.sampler,
                "sampler_seed": self.sampler_seed, "tpe_startup": self.tpe_startup,
                "pruner_startup": self.pruner_startup, "pruner_warmup": self.pruner_warmup}

    def ops(self) -> dict[str, Any]:
        return {"n_trials": self.n_trials, "stale_after_s": self.stale_after_s,
                "max_retries": self.max_retries, "data_root": self.data_root, "device": self.device}

    @classmethod
    def from_study(cls, study, output: Path, storage: str | None) -> "TuneOptions":
        config, ops = dict(study.user_attrs["config"]), study.user_attrs["ops"]
        config["task"] = TaskSpec(**config["task"])
        config["recipe"] = Recipe.from_dict(config["recipe"])
        config["fp_recipe"] = Recipe.from_dict(config["fp_recipe"]) if config["fp_recipe"] else None
        return cls(**config, **ops, output=Path(output), storage=storage, study_name=study.study_name)

    def spec(self, params: dict[str, Any]) -> RunSpec:
        """The run of a trial with these params (recipe knobs into the recipe, the rest as method hparams)."""
        recipe_overrides, hparams = split_params(params)
        recipe = Recipe.from_dict({**asdict(self.recipe), **recipe_overrides})
        return RunSpec(task=self.task, arch=self.arch, method=self.method, recipe=recipe, w_bits=self.w_bits,
                       a_bits=self.a_bits, seed=self.seed, hparams=hparams, fp_recipe=self.fp_recipe)

    def validate(self) -> None:
        from benchmarks.validate import validate_spec

        validate_spec(self.spec({}))
        make_sampler(self.sampler, self.sampler_seed)
        if not 0 < self.task.val_fraction < 1:
            raise ValueError("tuning selects on the validation split: val_fraction must be in (0, 1)")


def open_storage(study_dir: Path, url: str | None):
    """The RDB at ``url``, else a journal file in the study directory, locked by O_CREAT|O_EXCL lock files
    (``JournalFileOpenLock``): safe on NFSv3+, where the fcntl locks SQLite relies on are not."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url:
        return optuna.storages.RDBStorage(url)
    study_dir.mkdir(parents=True, exist_ok=True)
    path = str(study_dir / "journal.log")
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def prepare_study(options: TuneOptions, enqueue: Iterable[dict[str, Any]] = ()):
    """Create the study (or load it, checking it searches the same thing) and record how it runs.
    ``enqueue``: params of the first trials of a new study (e.g. the paper's defaults); knobs left out are
    sampled."""
    import optuna

    options.validate()
    enqueue = list(enqueue)
    unknown = sorted({key for params in enqueue for key in params} - set(options.space))
    if unknown:
        raise ValueError(f"enqueued param {unknown[0]!r} is not in the search space "
                         f"({', '.join(options.space)})")
    storage = open_storage(options.study_dir, options.storage)
    study = optuna.create_study(study_name=options.name, storage=storage, direction="maximize",
                                load_if_exists=True)
    config = json.loads(json.dumps(options.config()))  # as stored: tuples become lists
    stored = study.user_attrs.get("config")
    if stored is not None and stored != config:
        diff = sorted(k for k in config if config[k] != stored.get(k))
        raise ValueError(f"study {options.name!r} exists with other settings ({', '.join(diff)}); use "
                         "another --output or --study-name")
    if stored is None:
        study.set_user_attr("config", config)
        for params in enqueue:
            study.enqueue_trial(params)
    study.set_user_attr("ops", options.ops())
    study.set_user_attr("output", str(options.study_dir))
    study.set_user_attr("storage", options.storage or str(options.study_dir / "journal.log"))
    return _attach(study, options)


def load_study(output: Path, study_name: str, storage: str | None = None):
    """Open an existing study from a worker: returns (study, options), everything rebuilt from the storage."""
    import optuna

    study_dir = Path(output).resolve() / "tuning" / study_name
    study = optuna.load_study(study_name=study_name, storage=open_storage(study_dir, storage))
    options = TuneOptions.from_study(study, output, storage)
    return _attach(study, options), options


def _attach(study, options: TuneOptions):
    import optuna

    study.sampler = make_sampler(options.sampler, options.sampler_seed, options.tpe_startup)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=options.pruner_startup,
                                               n_warmup_steps=options.pruner_warmup)
    return study


def ensure_parent(options: TuneOptions, log: Log = print) -> None:
    """Train the FP parent of QAT trials once, in the study directory, without evaluating the test split."""
    from benchmarks.train import run

    parent = options.spec({}).parent()
    if parent is not None:
        run(parent, options.study_dir, grid=f"tune/{options.name}", data_root=options.data_root,
            device=options.device, log=log, eval_test=False)


def remaining(study, n_trials: int) -> int:
    """Trials still to run: new ones up to ``n_trials`` (retries do not count) plus queued retries."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    originals = sum("retry_of" not in t.user_attrs for t in trials)
    return max(0, n_trials - originals) + sum(t.state == TrialState.WAITING for t in trials)


def fail_stale(study, options: TuneOptions, ended_jobs: Iterable[str] = (), log: Log = print) -> list[int]:
    """Mark RUNNING trials whose worker is gone as FAIL and queue their params again (bounded retries).

    Optuna's heartbeat exists only for RDB storages, so the journal gets this equivalent: a trial records its
    worker (host, pid, job id) and its run directory refreshes a heartbeat file every epoch. Gone means: a
    dead pid on this host, a job the launcher saw end, or (other hosts) no heartbeat for ``stale_after_s``.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    ended, failed = set(ended_jobs), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _stale_reason(trial, options, ended)
        if reason is None:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except UpdateFinishedTrialError:
            continue  # another worker failed it first and owns the retry
        failed.append(trial.number)
        log(f"[tune] trial {trial.number} failed as stale: {reason}")
        _queue_retry(study, trial, options, reason)
    return failed


def _queue_retry(study, trial, options: TuneOptions, reason: str) -> None:
    """Queue a failed trial's params again (at most ``max_retries`` times); the retry resumes its run."""
    attempt = trial.user_attrs.get("attempt", 0)
    if attempt < options.max_retries:
        study.enqueue_trial(trial.params, user_attrs={
            "retry_of": trial.user_attrs.get("retry_of", trial.number), "attempt": attempt + 1,
            "previous_failure": f"trial {trial.number}: {reason}"})


def _stale_reason(trial, options: TuneOptions, ended: set[str]) -> str | None:
    now = time.time()
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    worker = trial.user_attrs.get("worker")
    if not worker:  # died between ask and recording its worker
        late = now - started > options.stale_after_s
        return f"no worker recorded after {now - started:.0f}s" if late else None
    if worker.get("job_id") in ended:
        return f"its job {worker['job_id']} ended"
    if worker["host"] == socket.gethostname():
        return None if _pid_alive(worker["pid"]) else f"pid {worker['pid']} on {worker['host']} is dead"
    beat = options.study_dir / "runs" / str(trial.user_attrs.get("run_id")) / "heartbeat"
    last = max(started, beat.stat().st_mtime if beat.exists() else 0.0)
    return f"no heartbeat for {now - last:.0f}s" if now - last > options.stale_after_s else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")  # a killed but unreaped child still answers kill(pid, 0)
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _job_id() -> str | None:
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return (os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
            or os.environ.get("SUBMITIT_DEBUG_JOB_ID"))


def run_trial(study, options: TuneOptions, ended_jobs: Iterable[str] = (), log: Log = print) -> str | None:
    """Ask the study for one trial, train it, tell the result; returns its state name (None: none left)."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from benchmarks.termination import Terminated
    from benchmarks.train import run

    fail_stale(study, options, ended_jobs, log)
    if remaining(study, options.n_trials) == 0:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "job_id": _job_id(),
                                   "time": time.time()})
    spec = options.spec(suggest(trial, options.space))
    trial.set_user_attr("run_id", spec.run_id)
    for row in records.read_metrics(records.run_dir(options.study_dir, spec.run_id)):
        trial.report(row["val_acc"], row["epoch"])  # a retry resumes the run: its finished epochs count

    def on_epoch(row: dict[str, Any]) -> None:
        trial.report(row["val_acc"], row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"val_acc {row['val_acc']:.2f} at epoch {row['epoch']} below the median")

    state, value, error = TrialState.COMPLETE, None, None
    try:
        result = run(spec, options.study_dir, grid=f"tune/{options.name}", data_root=options.data_root,
                     device=options.device, log=log, on_epoch=on_epoch, eval_test=False)
        value = result["metrics"]["val_last"]
    except optuna.TrialPruned:  # a pruned trial is never resumed: its checkpoint is dead weight
        state = TrialState.PRUNED
        (records.run_dir(options.study_dir, spec.run_id) / "checkpoint.pt").unlink(missing_ok=True)
    except Exception as err:  # a broken trial fails alone (its run dir has failed.json); the study goes on
        state, error = TrialState.FAIL, f"{type(err).__name__}: {err}"[:2000]
    try:
        if error is not None:
            trial.set_user_attr("error", error)
        study.tell(trial, value, state=state)
        if error is not None and error.startswith(Terminated.__name__):  # preempted, not broken: retried
            _queue_retry(study, trial, options, error)
    except UpdateFinishedTrialError:  # judged stale meanwhile (a heartbeat gap); its retry reuses the run
        log(f"[tune] trial {trial.number} was already failed as stale; result kept in its run directory")
    log(f"[tune] trial {trial.number} {state.name} value={value} params={trial.params} run={spec.run_id}"
        + (f" error={error}" if error else ""))
    return state.name


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
    from benchmarks.tuned import study_summary

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
    from benchmarks.launch_profiles import load_slurm_profile, make_executor

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
    from benchmarks.termination import stop_on_sigterm

    stop_on_sigterm()
    study, options = load_study(Path(output), study_name, storage)
    return run_trial(study, options)


def parent_job(output: str, study_name: str, storage: str | None) -> None:
    _, options = load_study(Path(output), study_name, storage)
    ensure_parent(options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cell = p.add_argument_group("what is tuned (one study per method x task x arch x bits)")
    cell.add_argument("--method", help="lsq | dorefa | alignq | climbq | emaq | emaq-lt | fp")
    cell.add_argument("--dataset", help="training dataset (source), e.g. mnist")
    cell.add_argument("--target", default=None, help="target domain for domain shift, e.g. mnistm-synth")
    cell.add_argument("--protocol", default="standard", help="standard | dann | source_only")
    cell.add_argument("--arch", help="architecture, e.g. dann_digits")
    cell.add_argument("--bits", default="4/4", help="W/A bits, e.g. 4/4 (ignored for fp)")
    cell.add_argument("--seed", type=int, default=0, help="run seed of every trial")
    train = p.add_argument_group("how each trial trains")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch (quick)")
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--schedule", default="cosine", help="multistep | cosine | constant | dann")
    train.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the train split")
    train.add_argument("--fp-epochs", type=int, default=2, help="epochs of the FP parent (trained once)")
    train.add_argument("--fp-lr", type=float, default=0.05)
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


def options_from_args(args: argparse.Namespace) -> TuneOptions:
    """Validate the command line into TuneOptions (ValueError with a one-line message on bad input)."""
    for name in ("method", "dataset", "arch"):
        if not getattr(args, name):
            raise ValueError(f"--{name} is required")
    if args.trials < 1 or args.workers < 1 or args.max_retries < 0 or not 0 < args.val_fraction < 1:
        raise ValueError("--trials and --workers must be >= 1, --max-retries >= 0, 0 < --val-fraction < 1")
    w_bits, a_bits = (32, 32) if args.method == "fp" else parse_bits(args.bits)
    overrides = {}
    if args.lr_range:
        overrides["lr"] = parse_range(args.lr_range)
    if args.wd_range:
        overrides["weight_decay"] = parse_range(args.wd_range)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, schedule=args.schedule,
                    steps_per_epoch=args.steps_per_epoch)
    fp_recipe = Recipe(epochs=args.fp_epochs, batch_size=args.batch_size, lr=args.fp_lr, schedule="cosine",
                       steps_per_epoch=args.steps_per_epoch)
    options = TuneOptions(
        method=args.method, task=TaskSpec(args.dataset, args.target, args.protocol, args.val_fraction),
        arch=args.arch, w_bits=w_bits, a_bits=a_bits, seed=args.seed, recipe=recipe,
        fp_recipe=None if args.method == "fp" else fp_recipe, space=search_space(args.method, overrides),
        sampler=args.sampler, sampler_seed=args.sampler_seed, tpe_startup=args.tpe_startup,
        pruner_startup=args.pruner_startup, pruner_warmup=args.pruner_warmup, n_trials=args.trials,
        output=Path(args.output), storage=args.storage, study_name=args.study_name,
        stale_after_s=args.stale_after, max_retries=args.max_retries, data_root=args.data_root,
        device=args.device)
    options.validate()  # before the slurm profile is checked: the cell is the likelier typo
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return run_worker(Path(args.output), args.study_name, args.storage, args.trials)
    try:
        options = options_from_args(args)
        if args.launcher == "slurm":
            from benchmarks.launch_profiles import load_slurm_profile

            load_slurm_profile(args.slurm_profile)  # a bad profile fails here, before anything runs
        study = prepare_study(options, [parse_hparams(item.split(",")) for item in args.enqueue])
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    summary = continue_study(study, options, launcher=args.launcher, workers=args.workers,
                             slurm_profile=args.slurm_profile)
    if not args.no_mlflow:
        from benchmarks.tracking import sync_optuna_study

        summary["mlflow"] = sync_optuna_study(study, args.tracking_uri)
    if args.freeze:
        from benchmarks.tuned import freeze_best

        try:
            summary["frozen"] = str(freeze_best(study, args.hparams_dir))
        except ValueError as err:
            return fail(str(err))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
