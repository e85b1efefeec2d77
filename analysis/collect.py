"""Collect run records into one tidy table: a row per run, from run directories or from MLflow.

Only runs with a ``done`` marker (run dirs) or tag ``status=done`` (MLflow) carry metrics; the others are
kept as rows with status ``incomplete`` or ``failed`` so the coverage table can show them, and every
aggregate filters on ``status == "done"`` (partial runs leaking into tables is DomainBed #4/#75).
Both sources read the same ``result.json`` and ``metrics.jsonl``, so they give identical rows for done runs.
Each done run's score under every model-selection rule (``analysis.selection``) is computed here from its
``metrics.jsonl`` history, so a table only chooses a column.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.schema import (
    DONE,
    FAILED,
    INCOMPLETE,
    JSON_COLUMNS,
    empty_result_columns,
    hparams_source,
    result_columns,
    spec_columns,
    to_csv_value,
)
from analysis.selection import empty_selection_columns, selection_columns
from benchmarks.run.result import ResultRecord, ResultSchemaError
from benchmarks.run.rundir import RunDir, runs_root

log = logging.getLogger(__name__)
CURVE_COLUMNS = ("run_id", "epoch", "train_loss", "train_acc", "val_acc", "test_acc")

@dataclass
class CoverageInfo:
    """What collection saw, besides the rows: where it looked and what it could not read."""

    source: str
    n_done: int = 0
    n_incomplete: int = 0
    n_failed: int = 0
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.n_done} done, {self.n_incomplete} incomplete, {self.n_failed} failed "
                f"run(s) from {self.source}")
        return text + (f"; {len(self.unreadable)} unreadable" if self.unreadable else "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("cannot read %s: %s", path, err)
        return None
    return data if isinstance(data, dict) else None


def _read_result(data: dict[str, Any] | None, source: str) -> ResultRecord | None:
    if data is None:
        return None
    try:
        return ResultRecord.from_dict(data, source=source)
    except ResultSchemaError as err:
        log.warning("%s", err)
        return None


def find_run_dirs(path: str | Path) -> list[RunDir]:
    """Run dirs under ``path``: ``path/runs/*``, else ``path/*``, else ``path`` itself if it is one."""
    root = Path(path)
    if RunDir(root).spec_path.is_file():
        return [RunDir(root)]
    base = runs_root(root) if runs_root(root).is_dir() else root
    return [RunDir(p) for p in sorted(base.iterdir()) if p.is_dir() and RunDir(p).spec_path.is_file()]


def make_row(run_id: str, status: str, spec_record: dict[str, Any] | None,
             result: ResultRecord | None, source: str, history: list[dict[str, Any]] | None = None,
             provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row from a spec.json-like record and (for done runs) its result record and epoch history.

    ``provenance`` (where tuned hyper-parameters came from) defaults to the spec record's own.
    """
    spec_record = spec_record or {}
    spec = (result.spec if result is not None else None) or spec_record.get("spec") or {}
    grid = result.grid if result is not None else spec_record.get("grid")
    row: dict[str, Any] = {"run_id": run_id, "status": status, "source": source}
    row.update(spec_columns(spec, grid))
    row["hparams_source"] = hparams_source(provenance if provenance is not None
                                           else spec_record.get("provenance"))
    row.update(result_columns(result) if result is not None else empty_result_columns())
    # only a done run has a score: an unfinished run's history would leak a partial number into a mean
    done = status == DONE and result is not None
    row.update(selection_columns(history, result.metrics) if done else empty_selection_columns())
    return row


def run_dir_row(run_dir: RunDir) -> dict[str, Any] | None:
    """The row of one run dir, or None if its spec.json cannot be read."""
    spec_record = _read_json(run_dir.spec_path)
    if spec_record is None:
        return None
    run_id = str(spec_record.get("run_id") or run_dir.run_id)
    result, history = None, None
    if run_dir.is_done():
        result = _read_result(_read_json(run_dir.result_path), str(run_dir.result_path))
        # A done marker without a readable result is not a finished run as far as tables go.
        status = DONE if result is not None else INCOMPLETE
        history = read_history(run_dir.metrics_path)
    elif run_dir.failed_path.exists():
        status = FAILED
    else:
        status = INCOMPLETE
    row = make_row(run_id, status, spec_record, result, source=str(run_dir.path), history=history)
    if status == FAILED:
        row["error"] = (_read_json(run_dir.failed_path) or {}).get("error")
    return row


def runs_frame(rows: list[dict[str, Any]], info: CoverageInfo) -> tuple[pd.DataFrame, CoverageInfo]:
    """Rows -> DataFrame sorted by run_id (stable output), with the counts filled into ``info``."""
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=list(make_row("", DONE, {}, None, "").keys()))
    else:
        df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    info.n_done = int((df["status"] == DONE).sum())
    info.n_incomplete = int((df["status"] == INCOMPLETE).sum())
    info.n_failed = int((df["status"] == FAILED).sum())
    return df, info


def collect_runs(path: str | Path) -> tuple[pd.DataFrame, CoverageInfo]:
    """Read every run dir under ``path`` (an output dir with ``runs/``, or a folder of run dirs)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no such run directory: {root}")
    info = CoverageInfo(source=str(root))
    rows = []
    for run_dir in find_run_dirs(root):
        problem = run_dir.identity_problem()
        if problem is not None:  # a copy under another name must not count as a second run
            log.warning("ignored: %s", problem)
            info.unreadable.append(str(run_dir.path))
            continue
        if ((_read_json(run_dir.spec_path) or {}).get("spec") or {}).get("kind") == "tta":
            continue  # test-time adaptation runs score a stream, not a test set: analysis/tta_table.py
        row = run_dir_row(run_dir)
        if row is None:
            info.unreadable.append(str(run_dir.path))
        else:
            rows.append(row)
    return runs_frame(rows, info)


def read_history(path: Path) -> list[dict[str, Any]]:
    """The epoch rows of a metrics.jsonl file ([] if absent); a torn line is skipped, not fatal."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line from an interrupted write
        if isinstance(rec, dict) and "epoch" in rec:
            rows.append(rec)
    return rows


def read_curves(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Per-epoch metrics (metrics.jsonl) of the given run dirs, one row per (run_id, epoch)."""
    records = [{k: rec.get(k) for k in CURVE_COLUMNS}
               for run_dir in run_dirs for rec in read_history(RunDir(run_dir).metrics_path)]
    return pd.DataFrame(records, columns=list(CURVE_COLUMNS))


def write_runs_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """The tidy table as CSV: structured columns as sorted JSON text."""
    out = df.copy()
    for col in JSON_COLUMNS:
        if col in out.columns:
            out[col] = out[col].map(to_csv_value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, float_format="%.6g")
    return path


# ---------------------------------------------------------------------------------------------- MLflow

def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    """Flattened spec params (``task.dataset`` or ``task/dataset``) back to a nested dict."""
    nested: dict[str, Any] = {}
    for key, text in params.items():
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = text
        parts = key.replace("/", ".").split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return nested.get("spec", nested)


def _download(run, name: str, tracking_uri: str, tmp: str) -> Path | None:
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name,
                                                    dst_path=f"{tmp}/{run.info.run_id}",
                                                    tracking_uri=tracking_uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        log.debug("run %s has no artifact %s: %s", run.info.run_id, name, err)
        return None
    return Path(local)


def _download_json(run, name: str, tracking_uri: str, tmp: str) -> dict[str, Any] | None:
    local = _download(run, name, tracking_uri, tmp)
    return _read_json(local) if local is not None else None


def collect_mlflow(tracking_uri: str, experiment_names: list[str]) -> tuple[pd.DataFrame, CoverageInfo]:
    """Read the runs of ``experiment_names`` from an MLflow tracking server or store.

    Done runs (tag ``status=done``) are read from their ``result.json`` artifact, the same file the run dir
    holds; others become incomplete/failed rows built from their ``spec.json`` artifact or params.
    """
    import mlflow  # imported here: it costs about a second and run-dir users do not need it

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact otherwise
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    info = CoverageInfo(source=f"{tracking_uri} experiments {', '.join(experiment_names)}")
    experiment_ids = []
    for name in experiment_names:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise ValueError(f"no MLflow experiment named {name!r} at {tracking_uri}")
        experiment_ids.append(exp.experiment_id)
    runs = client.search_runs(experiment_ids, max_results=50000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            tags = run.data.tags
            run_id = tags.get("run_id", run.info.run_name or run.info.run_id)
            mlflow_status = tags.get("status", "")
            result_data = _download_json(run, RunDir.RESULT, tracking_uri, tmp) \
                if mlflow_status == DONE else None
            result = _read_result(result_data, f"MLflow run {run.info.run_id} {RunDir.RESULT}")
            if mlflow_status == DONE and result is None:
                info.unreadable.append(run_id)
                status = INCOMPLETE
            else:
                status = DONE if result is not None else (FAILED if mlflow_status == FAILED else INCOMPLETE)
            spec_record = result_data or _download_json(run, RunDir.SPEC, tracking_uri, tmp) \
                or {"spec": _unflatten(run.data.params), "grid": tags.get("grid")}
            if (spec_record.get("spec") or {}).get("kind") == "tta":
                continue  # as from run dirs: test-time adaptation runs go to analysis/tta_table.py
            # without the metrics.jsonl artifact the selection rules fall back to result.json's values
            history = None
            if status == DONE:
                local = _download(run, RunDir.METRICS, tracking_uri, tmp)
                history = read_history(local) if local is not None else None
            provenance = {"hparams": tags["hparams_source"]} if "hparams_source" in tags else None
            rows.append(make_row(run_id, status, spec_record, result, source=f"mlflow:{run.info.run_id}",
                                 history=history, provenance=provenance))
    return runs_frame(rows, info)


def read_mlflow_curves(tracking_uri: str, experiment_names: list[str]) -> pd.DataFrame:
    """Per-epoch metrics from each run's ``metrics.jsonl`` artifact (when the sync uploaded it)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for n in experiment_names if (e := client.get_experiment_by_name(n))]
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in client.search_runs(ids, max_results=50000):
            local = _download(run, RunDir.METRICS, tracking_uri, tmp)
            if local is not None:  # no curves for this run otherwise; figures skip it
                frames.append(read_curves([local.parent]))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else read_curves([])
