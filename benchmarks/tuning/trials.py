"""One trial of a study: ask, train (resuming a retried run), tell; and the bookkeeping that keeps a study
going when workers die: stale RUNNING trials are failed and their params queued again (bounded retries)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable

from benchmarks.run.rundir import RunDir
from benchmarks.tuning.search_spaces import suggest
from benchmarks.tuning.study import Log, TuneOptions


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
    beat = RunDir.of(options.study_dir, str(trial.user_attrs.get("run_id"))).heartbeat_path
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

    from benchmarks.run.termination import Terminated
    from benchmarks.run.trainer import run

    fail_stale(study, options, ended_jobs, log)
    if remaining(study, options.n_trials) == 0:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "job_id": _job_id(),
                                   "time": time.time()})
    spec = options.spec(suggest(trial, options.space))
    trial.set_user_attr("run_id", spec.run_id)
    for row in RunDir.of(options.study_dir, spec.run_id).read_metrics():
        trial.report(row["val_acc"], row["epoch"])  # a retry resumes the run: its finished epochs count

    def on_epoch(row: dict[str, Any]) -> None:
        trial.report(row["val_acc"], row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"val_acc {row['val_acc']:.2f} at epoch {row['epoch']} below the median")

    state, value, error = TrialState.COMPLETE, None, None
    try:
        result = run(spec, options.study_dir, grid=f"tune/{options.name}", data_root=options.data_root,
                     device=options.device, log=log, on_epoch=on_epoch, eval_test=False)
        value = result.metrics.val_last if result is not None else None
    except optuna.TrialPruned:  # a pruned trial is never resumed: its checkpoint is dead weight
        state = TrialState.PRUNED
        RunDir.of(options.study_dir, spec.run_id).checkpoint_path.unlink(missing_ok=True)
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
