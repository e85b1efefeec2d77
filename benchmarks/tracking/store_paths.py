"""Where a SQLite MLflow store keeps its artifacts, how to keep them readable when the output directory that
holds both moves, and where to browse an experiment afterwards.

MLflow writes every experiment's ``artifact_location`` and every run's ``artifact_uri`` into the database as
absolute ``file://`` URIs, so moving ``<output>/`` (database and ``mlartifacts/`` together) left every
artifact pointing at the old place. ``repoint_artifacts`` runs at the start of each sync, under the store's
lock: it rewrites the locations of the experiments whose artifacts we put in ``<db dir>/mlartifacts`` to
where that folder is now. MLflow has no API to change an experiment's location, hence plain SQL on the
tables MLflow's own migrations create (``experiments.artifact_location``, ``runs.artifact_uri``).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.run.redact import redact_url

ARTIFACTS_DIR = "mlartifacts"
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """The ``file://`` URI of a SQLite store's artifact folder (beside the database), else None."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).resolve().as_uri() if db is not None else None


def repoint_artifacts(uri: str) -> int:
    """Point the experiments of a moved SQLite store (and their runs) at its current artifact folder;
    returns how many experiments were re-pointed. Other stores, and a store not created yet: 0."""
    db, root = sqlite_path(uri), artifact_root(uri)
    if db is None or root is None or not db.exists():
        return 0
    moved = 0
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"experiments", "runs"} <= tables:
            return 0
        rows = connection.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
        for experiment_id, location in rows:
            if not location or location == root or not location.rstrip("/").endswith(f"/{ARTIFACTS_DIR}"):
                continue  # ours and in place, or not ours (a server's, the user's own)
            connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                               (root, experiment_id))
            connection.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                               "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                               (root, len(location) + 1, experiment_id, len(location), location))
            moved += 1
    return moved


def runs_page(uri: str, experiment_id: str) -> str:
    """Where to look at an experiment's runs: the page on a server; for a SQLite store the ``mlflow ui``
    command to start first and the page it then serves."""
    page = f"#/experiments/{experiment_id}"
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"MLflow runs page: {base}/{page}"
    return (f"MLflow runs page: run `mlflow ui --backend-store-uri {redact_url(uri)}`, then open "
            f"{UI_ADDRESS}/{page}")
