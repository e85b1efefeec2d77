"""Tuning rounds through the launch registry: each round launches the trials a study still needs (the first
round also its FP parent, which the trials wait for), waits, fails the trials of dead workers and queues their
retries; rounds repeat until the study has its trials. Also the job functions a launcher runs (one trial, the
FP parent) and the ``tune.py --worker`` loop."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.launch.job import use_assigned_gpu
from benchmarks.launch.options import LaunchOptions
from benchmarks.launch.registry import get_launcher, launch
from benchmarks.launch.requests import JobRequest
from benchmarks.run.rundir import RunDir
from benchmarks.tuning.study import Log, TuneOptions, ensure_parent, load_study
from benchmarks.tuning.trials import fail_stale, remaining, run_trial

POLL_S = 2.0


def continue_study(study, options: TuneOptions, launcher: str = "local", workers: int = 1,
                   slurm_profile: str = "local", log: Log = print) -> dict[str, Any]:
    """Run trials until the study has ``n_trials`` (plus retries of dead ones); returns a summary.

    ``local`` with one worker runs the trials one after another in this process (the registry's ``debug``
    launcher), so each trial's sampler sees every earlier result; with N workers, N trial processes at once.
    A worker that dies leaves its trial RUNNING only until the next round (or the next worker's ask) fails it
    and queues the retry. A failed FP parent stops the study with its error.
    """
    name = "debug" if launcher == "local" and workers == 1 else launcher
    get_launcher(name)
    launch_options = LaunchOptions(folder=options.study_dir / "submitit", workers=workers,
                                   slurm_profile=slurm_profile, job_name=f"tune-{options.name}",
                                   poll_s=POLL_S, log=log)
    parent = _parent_request(options)
    ended: set[str] = set()
    fail_stale(study, options, ended, log)
    # Each round finishes >= 1 trial (or raises), and at most n_trials * (1 + max_retries) trials exist.
    for _ in range(options.n_trials * (options.max_retries + 1) + 1):
        todo = remaining(study, options.n_trials)
        if todo == 0:
            break
        done_before = _finished(study)
        args = (str(options.output), options.name, options.storage)
        after = parent.key if parent is not None else None
        trials = [JobRequest(f"trial {i + 1}/{todo}", trial_job, args, after) for i in range(todo)]
        report = launch(([parent] if parent else []) + trials, name, launch_options)
        if parent is not None and parent.key in report.failed:
            raise RuntimeError(f"the FP parent {parent.key} of study {options.name!r} failed: "
                               f"{report.failed[parent.key]}")
        parent = None
        ended |= {report.job_ids[t.key] for t in trials if t.key in report.job_ids}
        fail_stale(study, options, ended, log)  # the round's dead workers count as progress: retries queued
        if _finished(study) == done_before:
            raise RuntimeError(f"a round of {todo} trial(s) finished none; see the logs in "
                               f"{options.study_dir}")
    from benchmarks.tuning.frozen import study_summary

    return study_summary(study)


def _parent_request(options: TuneOptions) -> JobRequest | None:
    """The FP parent's job, keyed by its run id; None for an FP study or a parent already trained."""
    parent = options.spec({}).parent()
    if parent is None or RunDir.of(options.study_dir, parent.run_id).is_done():
        return None
    return JobRequest(parent.run_id, parent_job, (str(options.output), options.name, options.storage))


def _finished(study) -> int:
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def run_worker(output: Path, study_name: str, storage: str | None, trials: int) -> int:
    """A worker process (``tune.py --worker``, e.g. started by hand on another machine to add a worker to a
    study): up to ``trials`` trials of an existing study."""
    study, options = load_study(output, study_name, storage)
    for _ in range(trials):
        if run_trial(study, options) is None:
            break
    return 0


def trial_job(output: str, study_name: str, storage: str | None) -> str | None:
    """One job = one trial: load the study, ask, train, tell."""
    from benchmarks.run.termination import stop_on_sigterm

    stop_on_sigterm()
    use_assigned_gpu()
    study, options = load_study(Path(output), study_name, storage)
    return run_trial(study, options)


def parent_job(output: str, study_name: str, storage: str | None) -> None:
    """One job: train the study's FP parent (once; a done parent returns at once)."""
    use_assigned_gpu()
    _, options = load_study(Path(output), study_name, storage)
    ensure_parent(options)
