"""Optuna tuning (benchmarks/tune.py, search_spaces.py, tuned.py) on a tiny offline MNIST cell.

Pruning is made certain by enqueueing two first trials: a sane lr, then lr=50 (diverges at once), with a
median pruner that starts after one finished trial. Run: default (fast), ``-m slow``, ``-m slurm``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import benchmarks.run.trainer as train_module
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.tune import (
    TuneOptions,
    continue_study,
    ensure_parent,
    fail_stale,
    load_study,
    prepare_study,
    remaining,
    run_trial,
)
from benchmarks.tuning.frozen import apply_tuned, freeze_best, load_tuned, tuned_path
from benchmarks.tuning.search_spaces import make_sampler, search_space, suggest

try:
    from tests.slurm_fixture import slurm_cluster  # noqa: F401
except ImportError:  # the fixture module is another helper's; without it the slurm test is skipped
    slurm_cluster = None

REPO = Path(__file__).resolve().parents[2]
FIRST = [{"lr": 0.02, "weight_decay": 1e-4}, {"lr": 50.0, "weight_decay": 1e-4}]  # sane, then divergent


BASE = RunSpec(task=TaskSpec("mnist", val_fraction=0.01), arch="dann_digits", method="lsq", w_bits=4,
               a_bits=4, recipe=Recipe(epochs=2, batch_size=32, steps_per_epoch=2, schedule="cosine"),
               fp_recipe=Recipe(epochs=1, batch_size=32, lr=0.05, steps_per_epoch=10, schedule="cosine"))


def _options(tmp_path: Path, base: RunSpec = BASE, **changes) -> TuneOptions:
    options = dict(base=base, space=search_space(base.method, {"lr": ("float", 1e-5, 100.0, True)}),
                   sampler="random", pruner_startup=1, n_trials=4, output=tmp_path / "out")
    options.update(changes)
    return TuneOptions(**options)


def _quiet(_: str) -> None:
    pass


class _Poisoned:
    """Stands in for a test split: any use of it fails the trial that touched it."""

    def __getattribute__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_search_space_shared_plus_method_knobs():
    space = search_space("alignq")
    assert list(space)[:2] == ["lr", "weight_decay"] and {"mu", "rho"} <= set(space)
    assert space["lr"][0] == "float" and space["lr"][3] is True  # log-uniform
    with pytest.raises(ValueError, match="not a knob"):
        search_space("lsq", {"mu": ("float", 0.0, 1.0, False)})
    params = suggest(optuna.trial.FixedTrial({"lr": 0.1, "weight_decay": 1e-4, "rescale_by_max": True}),
                     search_space("dorefa"))
    assert params == {"lr": 0.1, "weight_decay": 1e-4, "rescale_by_max": True}


def test_random_search_is_per_trial_reproducible():
    """DomainBed-style: trial k's params depend on (seed, k) only, whatever ran before it."""
    space = search_space("emaq")

    def params(seed: int, n: int, shuffle_history: bool) -> list[dict]:
        study = optuna.create_study(sampler=make_sampler("random", seed), direction="maximize")
        out = []
        for _ in range(n):
            trial = study.ask()
            out.append(suggest(trial, space))
            study.tell(trial, float(len(out)) if shuffle_history else 0.0)
        return out

    assert params(3, 4, False) == params(3, 4, True)
    assert params(3, 4, False) != params(4, 4, False)
    tpe = [optuna.create_study(sampler=make_sampler("tpe", 7, tpe_startup=2)) for _ in range(2)]
    for study in tpe:
        study.optimize(lambda t: suggest(t, {"x": ["float", -1.0, 1.0, False]})["x"] ** 2, n_trials=5)
    assert [t.params for t in tpe[0].trials] == [t.params for t in tpe[1].trials]


def test_stale_trial_is_failed_and_retried_bounded(tmp_path):
    options = _options(tmp_path, max_retries=1)
    study = prepare_study(options)
    dead = subprocess.Popen(["true"])
    dead.wait()
    seen = []
    for attempt in range(2):
        trial = study.ask()
        seen.append(suggest(trial, options.space))
        trial.set_user_attr("worker", {"host": os.uname().nodename, "pid": dead.pid, "job_id": None})
        assert fail_stale(study, options, log=_quiet) == [trial.number]
        waiting = study.get_trials(states=(TrialState.WAITING,))
        if attempt == 0:  # first death: re-queued
            assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == trial.number
        else:  # the retry got the same params; its death exhausts max_retries=1
            assert seen[1] == seen[0] and trial.user_attrs["attempt"] == 1 and waiting == []
    assert study.get_trials(states=(TrialState.RUNNING,)) == []
    assert remaining(study, options.n_trials) == options.n_trials - 1  # one original consumed


def test_small_study_prunes_freezes_and_never_reads_test_split(tmp_path, monkeypatch):
    built = []
    real_build = train_module.build_task

    def poisoned_build(*args, **kwargs):
        task = real_build(*args, **kwargs)
        task.tests = {name: _Poisoned() for name in task.tests}
        for domain in task.sources + task.targets:
            domain.test = _Poisoned()
        built.append(task)
        return task

    monkeypatch.setattr(train_module, "build_task", poisoned_build)
    options = _options(tmp_path, n_trials=3)
    study = prepare_study(options, FIRST)
    summary = continue_study(study, options, log=_quiet)

    states = [t.state for t in study.trials]
    assert len(states) == options.n_trials
    assert TrialState.FAIL not in states and TrialState.RUNNING not in states
    assert TrialState.PRUNED in states and summary["trials"]["pruned"] >= 1
    assert study.trials[1].state == TrialState.PRUNED  # lr=50 fell below the median at epoch 1
    assert len(built) == options.n_trials + 1  # every trial and the FP parent went through the builder
    for trial in study.trials:  # every trial is an ordinary run directory, validation-only
        directory = RunDir.of(options.study_dir, trial.user_attrs["run_id"]).path
        assert (directory / "spec.json").exists()
        assert all(row["test_acc"] is None and row["test_acc_by_domain"] == {} for row in
                   RunDir(directory).read_metrics())
        if trial.state == TrialState.COMPLETE:
            assert set(RunDir(directory).read_result().to_dict()["metrics"]) == {"val_last", "val_best"}

    path = freeze_best(study, tmp_path / "frozen")
    assert path == tuned_path("lsq", "mnist", "dann_digits", 4, 4, tmp_path / "frozen")
    tuned = load_tuned("lsq", "mnist", "dann_digits", 4, 4, root=tmp_path / "frozen")
    assert tuned["recipe_overrides"] == study.best_params and tuned["hparams"] == {}
    assert tuned["study"]["name"] == study.study_name and tuned["study"]["n_pruned"] >= 1
    assert tuned["study"]["storage"].endswith("journal.log") and tuned["study"]["sampler"] == "random"


def test_frozen_file_round_trip_and_apply(tmp_path):
    base = BASE.with_(method="alignq", task=TaskSpec("mnist", "mnistm-synth"), hparams={"admm": False})
    options = _options(tmp_path, base, space=search_space("alignq"))
    study = prepare_study(options)
    assert load_tuned("alignq", "mnist->mnistm-synth", "dann_digits", 4, 4, root=tmp_path) is None
    with pytest.raises(ValueError, match="no completed trial"):
        freeze_best(study, tmp_path)
    params = {"lr": 0.03, "weight_decay": 2e-4, "mu": 0.1, "rho": 0.05}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=_distributions(options.space),
                                              value=91.5, user_attrs={"run_id": "abc"}))
    path = freeze_best(study, tmp_path)
    assert path.name == "mnist_to_mnistm-synth__dann_digits__w4a4.json" and path.parent.name == "alignq"
    tuned = load_tuned("alignq", "mnist->mnistm-synth", "dann_digits", 4, 4, root=tmp_path)
    assert tuned["hparams"] == {"mu": 0.1, "rho": 0.05}
    assert tuned["recipe_overrides"] == {"lr": 0.03, "weight_decay": 2e-4}
    assert tuned["study"]["best_run_id"] == "abc" and tuned["study"]["best_value"] == 91.5
    assert tuned["format"] == 2 and tuned["code_version"] and tuned["created"]
    assert tuned["spec"]["hparams"] == {"admm": False} and "lr" not in tuned["spec"]["recipe"]
    spec = base.with_(seed=3)  # another seed of the same run: the values apply
    applied = apply_tuned(spec, tuned)
    assert applied.recipe.lr == 0.03 and applied.recipe.weight_decay == 2e-4
    assert applied.hparams == {"admm": False, "mu": 0.1, "rho": 0.05} and applied.run_id != spec.run_id
    data = json.loads(path.read_text())
    data["w_bits"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="describes"):
        load_tuned("alignq", "mnist->mnistm-synth", "dann_digits", 4, 4, root=tmp_path)


def _distributions(space):
    trial = optuna.create_study().ask()
    suggest(trial, space)
    return trial.distributions


def test_cli_bad_input_exits_2(tmp_path, capsys):
    from benchmarks.tune import main

    base = ["--method", "lsq", "--dataset", "mnist", "--output", str(tmp_path)]
    for bad in (["--arch", "nope"], ["--arch", "dann_digits", "--enqueue", "mu=0.1"],
                ["--arch", "dann_digits", "--launcher", "slurm", "--slurm-profile", "missing-profile"],
                ["--arch", "dann_digits", "--trials", "0"], ["--arch", "dann_digits", "--lr-range", "1:x"]):
        assert main(base + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    cli = [sys.executable, str(REPO / "benchmarks" / "tune.py")]
    proc = subprocess.run([*cli, *base, "--arch", "dann_digits", "--bits", "4/x"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: invalid bits"), proc.stderr
    assert not (tmp_path / "tuning").exists()  # nothing was created by bad input


def test_killed_worker_leaves_no_running_trial(tmp_path, capsys):
    """SIGKILL a worker process mid-trial: its trial is failed, re-queued, resumed, and the study finishes
    (continued through the ``debug`` launcher: the SLURM job function, run in-process by submitit)."""
    options = _options(tmp_path, BASE.with_(recipe=Recipe(epochs=10, batch_size=32, steps_per_epoch=6)),
                       n_trials=2)
    study = prepare_study(options, FIRST[:1])
    ensure_parent(options, log=_quiet)
    worker = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "tune.py"), "--worker", "--output",
                               str(options.output), "--study-name", options.name, "--trials", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:  # wait until the worker's trial has finished its first epoch, then kill it
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and "run_id" in running[0].user_attrs:
            directory = RunDir.of(options.study_dir, running[0].user_attrs["run_id"]).path
            if RunDir(directory).read_metrics():
                break
        assert worker.poll() is None and time.monotonic() < deadline, "worker finished before it was killed"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = running[0]
    assert study.get_trials(states=(TrialState.RUNNING,))[0].number == killed.number  # dead, still RUNNING

    study, options = load_study(options.output, options.name)
    summary = continue_study(study, options, launcher="debug", log=_quiet)  # submitit's in-process executor
    trials = study.get_trials()
    assert summary["trials"]["running"] == 0 and trials[killed.number].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].params == killed.params and retry[0].user_attrs["run_id"] == killed.user_attrs["run_id"]
    assert sum("retry_of" not in t.user_attrs for t in trials) == options.n_trials
    assert "resuming after epoch" in capsys.readouterr().out  # the retry went on from the killed checkpoint
    assert run_trial(study, options, log=_quiet) is None  # nothing left to do


@pytest.mark.slow
def test_cli_eight_trials_two_workers_freeze(tmp_path):
    """The acceptance study through the CLI: 8 trials, 2 epochs, 2 worker processes, >= 1 pruned, frozen.
    The sane first trial runs alone (--trials 1), so the divergent second one meets a finished trial to be
    pruned against; the rerun with --trials 8 extends the same study."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "tune.py"), "--method", "lsq", "--dataset", "mnist",
           "--arch", "dann_digits", "--bits", "4/4", "--epochs", "2", "--steps-per-epoch", "3",
           "--batch-size", "32", "--val-fraction", "0.01", "--fp-epochs", "1", "--sampler", "random",
           "--pruner-startup", "1", "--lr-range", "1e-5:100", "--enqueue", "lr=0.02", "--enqueue", "lr=50",
           "--output", str(tmp_path / "out")]
    first = subprocess.run(cmd + ["--trials", "1", "--no-mlflow"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = subprocess.run(cmd + ["--trials", "8", "--launcher", "local", "--workers", "2", "--freeze",
                                 "--hparams-dir", str(tmp_path / "frozen")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert summary["trials"]["pruned"] >= 1 and summary["trials"]["running"] == 0
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 8
    assert Path(summary["frozen"]).exists() and summary["mlflow"]["created"] == 9  # 8 trials + FP parent

    import mlflow  # the study is a parent run, every trial's run dir a run nested under it

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["qbench-tuning"])
    parent = df[df["tags.qbench.kind"] == "study"]
    assert len(parent) == 1 and parent["tags.study_name"].iloc[0] == summary["study"]
    nested = df[df["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert len(nested) == 9 and "pruned" in set(nested["tags.status"])
    assert (nested["tags.trial_role"] == "fp_parent").sum() == 1


@pytest.mark.slurm
@pytest.mark.skipif(slurm_cluster is None, reason="tests/slurm_fixture.py not available")
def test_small_study_through_local_slurm(tmp_path, slurm_cluster):  # noqa: F811
    """8 trials, one SLURM job each. The sane first trial runs alone so that the divergent second one (in the
    next round, two jobs at a time) is pruned against a finished trial."""
    study = prepare_study(_options(tmp_path, n_trials=1), FIRST)
    continue_study(study, _options(tmp_path, n_trials=1), launcher="slurm",
                   slurm_profile=slurm_cluster.profile, log=_quiet)
    options = _options(tmp_path, n_trials=8)
    study = prepare_study(options)
    summary = continue_study(study, options, launcher="slurm", slurm_profile=slurm_cluster.profile,
                             log=_quiet)
    assert summary["trials"]["running"] == 0 and summary["trials"]["pruned"] >= 1
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 8
    jobs = {t.user_attrs["worker"]["job_id"] for t in study.trials}
    assert None not in jobs and len(jobs) == 8  # one SLURM job per trial
    assert freeze_best(study, tmp_path / "frozen").exists()


@pytest.mark.slurm
@pytest.mark.skipif(slurm_cluster is None, reason="tests/slurm_fixture.py not available")
def test_cancelled_slurm_job_trial_is_retried(tmp_path, slurm_cluster):  # noqa: F811
    """A trial's SLURM job cancelled mid-trial (as a preemption would): failed, retried, resumed, finished."""
    import benchmarks.tune as tune
    from benchmarks.launch.profiles import load_slurm_profile, make_executor

    options = _options(tmp_path, BASE.with_(recipe=Recipe(epochs=10, batch_size=32, steps_per_epoch=6)),
                       n_trials=1)
    study = prepare_study(options)
    ensure_parent(options, log=_quiet)
    executor = make_executor(load_slurm_profile(slurm_cluster.profile), tmp_path / "jobs", cluster="slurm")
    job = executor.submit(tune.trial_job, str(options.output), options.name, None)
    deadline = time.monotonic() + 240
    while True:
        running = study.get_trials(states=(TrialState.RUNNING,))
        run_id = running[0].user_attrs.get("run_id", "-") if running else "-"
        if running and RunDir.of(options.study_dir, run_id).read_metrics():
            break
        assert not job.done() and time.monotonic() < deadline, "the job ended before it was cancelled"
        time.sleep(0.2)
    job.cancel()
    while True:  # the cancelled process may take a moment to die; until then its trial is rightly RUNNING
        summary = continue_study(study, options, launcher="slurm", slurm_profile=slurm_cluster.profile,
                                 log=_quiet)
        if summary["trials"]["running"] == 0:
            break
        assert time.monotonic() < deadline, "the cancelled trial stayed RUNNING"
        time.sleep(1)
    assert summary["trials"]["fail"] == 1
    retry = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(retry) == 1 and retry[0].user_attrs["retry_of"] == running[0].number
