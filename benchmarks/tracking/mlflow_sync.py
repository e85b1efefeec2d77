"""MLflow as a *view* of the on-disk run records (``benchmarks/run/rundir.py``), filled by one writer.

Run directories are the truth; ``sync_runs`` copies them into MLflow idempotently, keyed by run id (tag
``run_id``): each DONE or FAILED run dir maps to exactly one MLflow run, found again by that tag on the next
sync, never duplicated. A FAILED run shows ``status=failed`` with its error; when it later finishes, the same
MLflow run is updated to ``status=done`` with its metrics. Syncing twice adds nothing.

Jobs never talk to MLflow themselves: a tracking backend shared by many SLURM jobs fails in the known ways
(SQLite locks on NFS, schema-migration races), and compute nodes often cannot reach a server.

Tracking URI: the ``tracking_uri`` argument, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///<output>/mlflow.db``. Any database or ``http(s)://`` server URI works; the deprecated file store
is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmarks.run.labels import bits_label, task_key
from benchmarks.run.redact import redact_url
from benchmarks.run.rundir import RunDir, RunState, run_dirs
from benchmarks.run.spec import RunSpec
from benchmarks.tracking.store_lock import store_lock
from benchmarks.tracking.store_paths import artifact_root, repoint_artifacts, runs_page

DEFAULT_EXPERIMENT = "qbench"
SYNC_TAG = "qbench.synced"  # what was last synced (state marker + extra-tag digest): equal means unchanged
EPOCHS_TAG = "qbench.epochs_logged"  # per-epoch metrics already logged (a resumed run only adds new ones)
RUN_STATUS = {"done": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
ARTIFACTS = (RunDir.RESULT, RunDir.SPEC, RunDir.METRICS)
# log_batch limits of the MLflow REST API (per request)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


def default_tracking_uri(output: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output).resolve() / 'mlflow.db'}"


def client_for(output: Path, tracking_uri: str | None = None):
    """An ``MlflowClient`` on the resolved URI (mlflow is imported here: jobs never pay its import)."""
    uri = tracking_uri or default_tracking_uri(output)
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(f"tracking URI {uri!r} is a file store, which MLflow 3 deprecates; use "
                         "sqlite:///PATH or http://HOST:PORT")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str) -> str:
    """Get or create an experiment. For a SQLite store the artifacts live beside the database, not in ./mlruns
    of whatever directory the sync happens to run from."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(client.tracking_uri))


def experiment_page(output: Path, tracking_uri: str | None, name: str) -> str | None:
    """The line that says where to browse experiment ``name`` (None if it does not exist)."""
    uri = tracking_uri or default_tracking_uri(output)
    found = client_for(output, uri).get_experiment_by_name(name)
    return None if found is None else runs_page(uri, found.experiment_id)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested spec -> {"task.dataset": "mnist", "recipe.lr": "0.1", ...}; lists as JSON, values as strings."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def runs_by_tag(client, exp_id: str, tag: str, duplicates: list[Any] | None = None) -> dict[str, Any]:
    """All active runs of an experiment that carry ``tag``, indexed by its value (one paged search); the
    oldest run of a value wins, later ones go to ``duplicates`` (left by syncs of older versions)."""
    found: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.`{tag}` != ''", max_results=1000,
                                  page_token=token)
        for run in page:
            found.setdefault(run.data.tags[tag], []).append(run)
        token = page.token
        if not token:
            break
    index = {}
    for value, runs in found.items():
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        index[value] = runs[0]
        if duplicates is not None:
            duplicates.extend(runs[1:])
    return index


def sync_runs(output: Path, tracking_uri: str | None = None, experiment: str | None = None, *,
              extra_tags: dict[str, dict[str, str]] | None = None,
              log: Callable[[str], None] = print) -> dict[str, int]:
    """Copy every DONE/FAILED run dir of ``<output>/runs/*`` into MLflow; returns counts of runs
    {created, updated, unchanged, skipped (unreadable, corrupt or copied run dirs, each logged with its
    reason), duplicates_removed}. Holds the store's sync lock throughout (``store_lock``).

    Experiment: ``experiment``, else the run's grid (spec.json ``grid``), else "qbench". ``extra_tags`` maps a
    run id to tags added to its run (tuning: ``mlflow.parentRunId``, trial number, ``status=pruned``...).
    """
    uri = tracking_uri or default_tracking_uri(output)
    with store_lock(uri, Path(output), log):
        _repoint(uri, log)
        return _sync_locked(client_for(output, uri), output, experiment, extra_tags or {}, log)


def _sync_locked(client, output: Path, experiment: str | None, extra_tags: dict[str, dict[str, str]],
                 log: Callable[[str], None]) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "duplicates_removed": 0}
    indexes: dict[str, tuple[str, dict[str, Any]]] = {}
    for directory in run_dirs(output):
        state = directory.state()
        if state is RunState.CORRUPT:
            log(f"MLflow sync: skipped {directory.run_id}: {directory.result_problem()}")
            counts["skipped"] += 1
            continue
        if state not in (RunState.DONE, RunState.FAILED):
            continue
        problem = directory.identity_problem()
        if problem is not None:  # a copied or hand-edited directory must not count as a second run
            log(f"MLflow sync: skipped {directory.run_id}: {problem}")
            counts["skipped"] += 1
            continue
        try:
            header = directory.read_spec()
            assert header is not None  # identity_problem() read it
            name = experiment or header.get("grid") or DEFAULT_EXPERIMENT
            if name not in indexes:
                exp_id = experiment_id(client, name)
                duplicates: list[Any] = []
                indexes[name] = (exp_id, runs_by_tag(client, exp_id, "run_id", duplicates))
                for run in duplicates:
                    client.delete_run(run.info.run_id)
                counts["duplicates_removed"] += len(duplicates)
            exp_id, index = indexes[name]
            extra = extra_tags.get(header["run_id"], {})
            counts[_sync_one(client, exp_id, index, directory, header, state, extra)] += 1
        except (OSError, ValueError, KeyError, TypeError) as err:  # one bad record never stops the sync
            log(f"MLflow sync: skipped {directory.path}: {type(err).__name__}: {err}")
            counts["skipped"] += 1
    return counts


def _sync_one(client, exp_id: str, index: dict[str, Any], directory: RunDir, header: dict[str, Any],
              state: RunState, extra: dict[str, str]) -> str:
    run_id = header["run_id"]
    failure = directory.read_failure() if state is RunState.FAILED else None
    marker = "done" if failure is None else f"failed:{failure.get('time')}"
    digest = hashlib.sha1(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:12]
    fingerprint = f"{marker}|{digest}"
    existing = index.get(run_id)
    if existing is not None and existing.data.tags.get(SYNC_TAG) == fingerprint:
        return "unchanged"
    record = directory.read_result() if failure is None else None
    result = record.to_dict() if record is not None else None
    tags = _tags(header, result, failure, directory)
    tags.update(extra)
    if "trial_number" in extra:  # an existing run of a trial gets the trial's name too
        tags["mlflow.runName"] = _run_name(header["spec"], extra)
    tags[SYNC_TAG] = fingerprint
    if existing is None:
        spec = header["spec"]
        started = int(directory.spec_path.stat().st_mtime * 1000)
        mlflow_run = client.create_run(exp_id, start_time=started, run_name=_run_name(spec, extra),
                                       tags={"run_id": run_id})
        mlflow_id, logged, old_marker = mlflow_run.info.run_id, 0, None
        _log_batch(client, mlflow_id, params=flatten(spec))
        index[run_id] = mlflow_run
    else:
        mlflow_id = existing.info.run_id
        logged = int(existing.data.tags.get(EPOCHS_TAG, 0))
        old_marker = existing.data.tags.get(SYNC_TAG, "").split("|")[0]
    if marker != old_marker:  # new records on disk (not just new tags): metrics, artifacts, run status
        history = directory.read_metrics()
        metrics = _epoch_metrics(history, after=logged)
        if result is not None:
            metrics += _final_metrics(result, step=history[-1]["epoch"] if history else 0)
            # the hyper-parameters the method really ran with (its defaults filled in), new keys only
            resolved = {"resolved_hparams": result.get("resolved_hparams") or {}}
            _log_batch(client, mlflow_id, params=flatten(resolved))
        _log_batch(client, mlflow_id, metrics=metrics)
        tags[EPOCHS_TAG] = str(max([logged] + [row["epoch"] for row in history]))
        _log_artifacts(client, mlflow_id, directory, result)
    else:
        tags[EPOCHS_TAG] = str(logged)
    if existing is not None and failure is None and "error" in existing.data.tags:
        client.delete_tag(mlflow_id, "error")  # the error of an earlier attempt no longer describes the run
    _log_batch(client, mlflow_id, tags=tags)
    end = (directory.done_path if failure is None else directory.failed_path).stat().st_mtime
    client.set_terminated(mlflow_id, status=RUN_STATUS.get(tags["status"], "FAILED"),
                          end_time=int(end * 1000))
    return "created" if existing is None else "updated"


def _run_name(spec: dict[str, Any], extra: dict[str, str] | None = None) -> str:
    """``lsq W4/A4 optdigits dann_digits s0``; a tuning trial starts with its number (``trial-007 ...``),
    so a study's runs sort and read by trial in the UI."""
    task = spec["task"]
    label = task_key(task["dataset"], task.get("target"))
    bits = bits_label(spec["w_bits"], spec["a_bits"], spec["method"])
    name = f"{spec['method']} {bits} {label} {spec['arch']} s{spec['seed']}"
    trial = (extra or {}).get("trial_number")
    return f"trial-{int(trial):03d} {name}" if trial is not None and str(trial).isdigit() else name


def _repoint(uri: str, log: Callable[[str], None]) -> None:
    moved = repoint_artifacts(uri)
    if moved:
        log(f"MLflow sync: the store moved; artifact locations of {moved} experiment(s) now point to "
            f"{artifact_root(uri)}")


def _tags(header: dict[str, Any], result: dict[str, Any] | None, failure: dict[str, Any] | None,
          directory: RunDir) -> dict[str, str]:
    spec = header["spec"]
    task = spec["task"]
    env = (result or {}).get("environment", {})
    job = env.get("slurm_job_id") or (directory.read_heartbeat() or {}).get("slurm_job_id")
    values = {
        "run_id": header["run_id"], "method": spec["method"], "dataset": task["dataset"],
        "target": task.get("target"), "arch": spec["arch"], "w_bits": spec["w_bits"],
        "a_bits": spec["a_bits"],
        "bits": bits_label(spec["w_bits"], spec["a_bits"], spec["method"]),
        "seed": spec["seed"], "grid": header.get("grid"), "slurm_job_id": job,
        "status": "done" if failure is None else "failed",
        # the commit under both names: ours, and the one MLflow's UI shows in its "Source" column
        "git_sha": env.get("code_version"), "mlflow.source.git.commit": env.get("code_version"),
    }
    tags = {key: str(value) for key, value in values.items() if value is not None}  # no "None" tags
    study = (header.get("provenance") or {}).get("study") or {}
    if study:  # hyper-parameters frozen from an Optuna study: keep the study findable from the run
        tags["hparams_source"] = "tuned"
        tags["tuned_study"] = str(study.get("name"))
        tags["tuned_storage"] = str(redact_url(study.get("storage")))
    if failure is not None:
        tags["error"] = str(failure.get("error"))[:4000]
    return tags


def _epoch_metrics(history: list[dict[str, Any]], after: int) -> list:
    from mlflow.entities import Metric

    out = []
    for row in history:
        if row["epoch"] <= after:
            continue
        stamp = int(row.get("time_s", time.time()) * 1000)
        values = {k: row.get(k) for k in ("train_loss", "train_acc", "val_acc", "test_acc", "lr")}
        values.update({f"test_acc/{d}": v for d, v in (row.get("test_acc_by_domain") or {}).items()})
        out += [Metric(k, float(v), stamp, row["epoch"]) for k, v in values.items()
                if v is not None and _is_number(v)]
    return out


def _final_metrics(result: dict[str, Any], step: int) -> list:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = result.get("metrics", {})
    values = {k: v for k, v in metrics.items() if _is_number(v)}
    values.update({f"per_domain_acc/{d}": v for d, v in (metrics.get("per_domain_acc") or {}).items()})
    return [Metric(k, float(v), stamp, step) for k, v in values.items() if _is_number(v)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _log_artifacts(client, mlflow_id: str, directory: RunDir, result: dict[str, Any] | None) -> None:
    names = ARTIFACTS if result is not None else (RunDir.SPEC, RunDir.METRICS, RunDir.FAILED)
    for name in names:
        if (directory.path / name).exists():
            client.log_artifact(mlflow_id, str(directory.path / name))
    if result is not None and "layer_report" in result:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layer_report.json"
            path.write_text(json.dumps(result["layer_report"], indent=2, default=str) + "\n")
            client.log_artifact(mlflow_id, str(path))


def _log_batch(client, mlflow_id: str, metrics: Iterable = (), params: dict[str, str] | None = None,
               tags: dict[str, str] | None = None) -> None:
    from mlflow.entities import Param, RunTag

    for chunk in _chunks(list(metrics), MAX_METRICS):
        client.log_batch(mlflow_id, metrics=chunk)
    for chunk in _chunks([Param(k, v) for k, v in (params or {}).items()], MAX_PARAMS):
        client.log_batch(mlflow_id, params=chunk)
    for chunk in _chunks([RunTag(k, str(v)) for k, v in (tags or {}).items()], MAX_TAGS):
        client.log_batch(mlflow_id, tags=chunk)


def _chunks(items: list, size: int) -> Iterable[list]:
    return (items[i:i + size] for i in range(0, len(items), size))


def sync_study(study_dir: Path, study_tags: dict[str, str], trial_tags: dict[str, dict[str, str]],
               tracking_uri: str | None = None, experiment: str = "qbench-tuning",
               log: Callable[[str], None] = print) -> dict[str, int]:
    """A tuning study as one parent MLflow run (found again by tag ``study_name``) with every run dir of the
    study nested under it (``mlflow.parentRunId``). ``study_tags`` (must include ``study_name``) go on the
    parent; ``trial_tags`` maps run id -> tags of that trial. The default tracking URI is the one of the
    output directory two levels up (``<output>/tuning/<study>``), so matrix runs and studies share a store."""
    study_dir = Path(study_dir)
    uri = tracking_uri or default_tracking_uri(study_dir.parent.parent)
    with store_lock(uri, study_dir, log):
        _repoint(uri, log)
        client = client_for(study_dir, uri)
        exp_id = experiment_id(client, experiment)
        name = study_tags["study_name"]
        found = client.search_runs([exp_id], filter_string=f"tags.`qbench.kind` = 'study' and "
                                   f"tags.`study_name` = '{name}'", order_by=["attributes.start_time ASC"])
        parent = found[0] if found else client.create_run(exp_id, run_name=name,
                                                          tags={"study_name": name, "qbench.kind": "study"})
        _log_batch(client, parent.info.run_id, tags=study_tags)
        # a parent left RUNNING looks like a zombie
        client.set_terminated(parent.info.run_id, status="FINISHED")
        common = {"study_name": name, "mlflow.parentRunId": parent.info.run_id}
        nested = {run_id: {**common, **tags} for run_id, tags in trial_tags.items()}
        for directory in run_dirs(study_dir):  # runs of the study that no trial names belong to it too
            nested.setdefault(directory.run_id, dict(common))
        return _sync_locked(client, study_dir, experiment, nested, log)


def sync_optuna_study(study, tracking_uri: str | None = None) -> dict[str, int]:
    """Sync a study made by ``benchmarks.tune``: tags of the parent run from the study (its name, storage,
    cell, sampler, best value, trial counts) and of each trial's run (number, Optuna state, value)."""
    from benchmarks.tuning.frozen import study_summary

    summary = study_summary(study)
    config = study.user_attrs["config"]
    base = RunSpec.from_dict(config["base"])  # the run the trials vary: tags and FP parent derive from it
    study_tags = {"study_name": study.study_name, "storage": str(redact_url(summary["storage"])),
                  "study_dir": str(summary["study_dir"]), "method": base.method,
                  "dataset": base.task.dataset, "target": str(base.task.target), "arch": base.arch,
                  "bits": bits_label(base.w_bits, base.a_bits, base.method),
                  "sampler": config["sampler"], "sampler_seed": str(config["sampler_seed"]),
                  "best_trial": str(summary["best_trial"]), "best_value": str(summary["best_value"]),
                  "best_run_id": str(summary["best_run_id"]),
                  **{f"n_{state}": str(n) for state, n in summary["trials"].items()}}
    status = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed"}
    trial_tags: dict[str, dict[str, str]] = {}
    for trial in study.get_trials(deepcopy=False):  # by number: a retry's tags win over its dead original
        if trial.state.name in status and "run_id" in trial.user_attrs:
            trial_tags[trial.user_attrs["run_id"]] = {
                "trial_number": str(trial.number), "optuna_state": trial.state.name,
                "status": status[trial.state.name], "trial_value": str(trial.value)}
    parent = base.parent()
    if parent is not None:
        trial_tags[parent.run_id] = {"trial_role": "fp_parent"}
    return sync_study(Path(summary["study_dir"]), study_tags, trial_tags, tracking_uri)
