"""MLflow as a view of the run records: benchmarks/tracking/mlflow_sync.py and benchmarks/sync_mlflow.py.

Run directories are made by the real trainer on a tiny offline MNIST task (one epoch of three steps); a
failure is a real one too (an ``on_epoch`` hook that raises), later resumed to DONE.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run
from benchmarks.tracking.mlflow_sync import flatten, sync_runs, sync_study

REPO = Path(__file__).resolve().parents[2]
TASK = TaskSpec("mnist", val_fraction=0.01)  # a small validation split keeps each epoch's evaluation short
RECIPE = Recipe(epochs=1, batch_size=64, steps_per_epoch=3)


def _spec(seed: int) -> RunSpec:
    return RunSpec(TASK, "dann_digits", "fp", RECIPE, seed=seed)


def _boom(row):
    raise RuntimeError("boom after epoch 1")


@pytest.fixture(scope="module")
def runs_template(tmp_path_factory) -> Path:
    """<out>/runs: two DONE runs (grid 'demo-grid') and one FAILED run (its epoch saved, then an error)."""
    out = tmp_path_factory.mktemp("records")
    for seed in (0, 1):
        run(_spec(seed), out, grid="demo-grid", log=lambda s: None)
    with pytest.raises(RuntimeError, match="boom"):
        run(_spec(2), out, grid="demo-grid", log=lambda s: None, on_epoch=_boom)
    return out


@pytest.fixture
def output(runs_template, tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copytree(runs_template / "runs", tmp_path / "out" / "runs")
    return tmp_path / "out"


def _search(uri: str, experiment: str = "demo-grid"):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def _check_view(uri: str, output: Path) -> None:
    df = _search(uri)
    assert len(df) == 3 and df["tags.run_id"].is_unique
    by_id = df.set_index("tags.run_id")
    for seed in (0, 1):
        spec = _spec(seed)
        row = by_id.loc[spec.run_id]
        result = RunDir.of(output, spec.run_id).read_result().to_dict()
        assert row["tags.status"] == "done" and row["status"] == "FINISHED"
        for key in ("top1_last", "top1_best", "top1_val_selected", "nll", "ece", "worst_domain_acc"):
            assert row[f"metrics.{key}"] == pytest.approx(result["metrics"][key])
        assert row["params.task.dataset"] == "mnist" and row["params.recipe.lr"] == str(RECIPE.lr)
        assert row["tags.method"] == "fp" and row["tags.seed"] == str(seed)
        assert row["tags.grid"] == "demo-grid" and row["tags.bits"] == "FP"
        assert row["tags.git_sha"] == result["environment"]["code_version"]
    failed = by_id.loc[_spec(2).run_id]
    assert failed["tags.status"] == "failed" and failed["status"] == "FAILED"
    assert "boom" in failed["tags.error"]


def test_flatten_stringifies_once():
    flat = flatten(_spec(0).to_dict())
    assert flat["task.dataset"] == "mnist" and flat["recipe.lr"] == "0.1"
    assert flat["recipe.milestones"] == "[]"
    assert flat["fp_recipe"] == "None" and all(isinstance(v, str) for v in flat.values())


def test_sync_sqlite_idempotent_then_failed_run_finishes(output):
    uri = f"sqlite:///{output / 'mlflow.db'}"
    # default: <output>/mlflow.db
    assert sync_runs(output) == {"created": 3, "updated": 0, "unchanged": 0, "skipped": 0,
                                 "duplicates_removed": 0}
    _check_view(uri, output)
    before = _search(uri)
    assert sync_runs(output) == {"created": 0, "updated": 0, "unchanged": 3, "skipped": 0,
                                 "duplicates_removed": 0}
    after = _search(uri)
    assert len(after) == 3 and sorted(after["run_id"]) == sorted(before["run_id"])

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    first = before.set_index("tags.run_id").loc[_spec(0).run_id, "run_id"]
    names = {a.path for a in client.list_artifacts(first)}
    assert names == {"result.json", "spec.json", "metrics.jsonl", "layer_report.json"}
    assert [m.step for m in client.get_metric_history(first, "val_acc")] == [1]

    # The failed run is resumed to DONE: the same MLflow run becomes status=done with its metrics.
    failed_spec = _spec(2)
    run(failed_spec, output, grid="demo-grid", log=lambda s: None)
    assert sync_runs(output) == {"created": 0, "updated": 1, "unchanged": 2, "skipped": 0,
                                 "duplicates_removed": 0}
    df = _search(uri).set_index("tags.run_id")
    assert len(df) == 3
    row = df.loc[failed_spec.run_id]
    assert row["tags.status"] == "done" and row["status"] == "FINISHED"
    assert "tags.error" not in df.columns or pd.isna(row["tags.error"])  # the old error tag is gone
    result = RunDir.of(output, failed_spec.run_id).read_result().to_dict()
    assert row["metrics.top1_last"] == pytest.approx(result["metrics"]["top1_last"])
    assert [m.step for m in client.get_metric_history(row["run_id"], "val_acc")] == [1]  # not logged twice


def test_experiment_argument_and_env_uri(output, monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert sync_runs(output, experiment="mine")["created"] == 3
    assert len(_search(uri, "mine")) == 3 and not (output / "mlflow.db").exists()
    with pytest.raises(ValueError, match="file store"):
        sync_runs(output, tracking_uri=str(tmp_path / "mlruns"))


def test_sync_study_nests_trial_runs(output):
    """A tuning study: one parent run, each run dir of the study nested under it, trial tags applied."""
    study_dir = output / "tuning" / "s1"
    shutil.copytree(output / "runs", study_dir / "runs")
    trial_tags = {_spec(0).run_id: {"trial_number": "0", "status": "done"},
                  _spec(2).run_id: {"trial_number": "1", "status": "pruned"}}  # _spec(1): a run of no trial
    study_tags = {"study_name": "s1", "storage": str(study_dir / "journal.log")}
    assert sync_study(study_dir, study_tags, trial_tags) == {
        "created": 3, "updated": 0, "unchanged": 0, "skipped": 0, "duplicates_removed": 0}
    study_tags["best_value"] = "12.5"  # parent tags follow the study; the trial runs are unchanged
    assert sync_study(study_dir, study_tags, trial_tags) == {
        "created": 0, "updated": 0, "unchanged": 3, "skipped": 0, "duplicates_removed": 0}
    df = _search(f"sqlite:///{output / 'mlflow.db'}", "qbench-tuning")
    parent = df[df["tags.qbench.kind"] == "study"]
    assert len(parent) == 1 and parent["tags.best_value"].iloc[0] == "12.5"
    nested = df[df["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]].set_index("tags.run_id")
    assert len(nested) == 3 and (nested["tags.study_name"] == "s1").all()
    assert nested.loc[_spec(2).run_id, "status"] == "KILLED"
    assert nested.loc[_spec(2).run_id, "tags.status"] == "pruned"
    assert pd.isna(nested.loc[_spec(1).run_id, "tags.trial_number"])  # nested, though no trial names it
    # a trial's run name starts with its number, so the UI lists a study's runs by trial
    assert nested.loc[_spec(2).run_id, "tags.mlflow.runName"] == "trial-001 fp FP mnist dann_digits s2"
    assert nested.loc[_spec(1).run_id, "tags.mlflow.runName"] == "fp FP mnist dann_digits s1"


@pytest.mark.slow  # two syncs into sqlite: ~15 s on a shared 2-core machine
def test_artifacts_survive_a_moved_output(output, tmp_path):
    """The SQLite store records absolute artifact paths; after the output directory moves, the next sync
    re-points them, and every artifact is readable from the new place (the old one is gone)."""
    from mlflow.tracking import MlflowClient

    assert sync_runs(output)["created"] == 3
    moved = tmp_path / "elsewhere" / "out"
    moved.parent.mkdir()
    output.rename(moved)
    lines: list[str] = []
    assert sync_runs(moved, log=lines.append)["unchanged"] == 3
    assert any("the store moved" in line for line in lines)
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("demo-grid")
    assert experiment.artifact_location == (moved / "mlartifacts").as_uri()
    for mlflow_run in client.search_runs([experiment.experiment_id]):
        local = client.download_artifacts(mlflow_run.info.run_id, "spec.json", str(tmp_path))
        assert json.loads(Path(local).read_text())["run_id"] == mlflow_run.data.tags["run_id"]
    lines.clear()
    assert sync_runs(moved, log=lines.append)["unchanged"] == 3 and lines == []  # in place: nothing to do


def test_cli(output, capsys):
    from benchmarks.sync_mlflow import main

    script = [sys.executable, str(REPO / "benchmarks" / "sync_mlflow.py")]
    assert "--tracking-uri" in subprocess.run(script + ["--help"], capture_output=True, text=True).stdout
    assert main(["--output", str(output / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert main(["--output", str(output), "--experiment", "cli"]) == 0
    counts, page = capsys.readouterr().out.strip().splitlines()[-2:]
    assert json.loads(counts) == {
        "created": 3, "updated": 0, "unchanged": 0, "skipped": 0, "duplicates_removed": 0}
    db = (output / "mlflow.db").resolve()
    assert page.startswith(f"cli: MLflow runs page: run `mlflow ui --backend-store-uri sqlite:///{db}`")
    assert page.endswith("http://127.0.0.1:5000/#/experiments/1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_sync_against_mlflow_server(output, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "w")
    # Own session/process group: the server forks workers, and the whole group is stopped at the end.
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            alive = server.poll() is None and time.monotonic() < deadline
            assert alive, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        assert sync_runs(output, tracking_uri=uri) == {"created": 3, "updated": 0, "unchanged": 0,
                                                       "skipped": 0, "duplicates_removed": 0}
        _check_view(uri, output)
        assert sync_runs(output, tracking_uri=uri) == {"created": 0, "updated": 0, "unchanged": 3,
                                                       "skipped": 0, "duplicates_removed": 0}
        assert len(_search(uri)) == 3
        assert any((tmp_path / "server-artifacts").rglob("result.json"))
    finally:
        _stop_group(server)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _sync_process(output: Path, uri: str) -> subprocess.Popen:
    script = [sys.executable, str(REPO / "benchmarks" / "sync_mlflow.py"), "--output", str(output),
              "--tracking-uri", uri]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_eight_concurrent_syncs_never_crash_duplicate_or_lose(output, tmp_path):
    """Eight syncs at once, on a fresh store and then on an existing one holding a duplicate left by an older
    version: every process exits 0, and the store ends with exactly one MLflow run per run id."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    for round_ in ("fresh", "existing"):
        if round_ == "existing":  # a duplicate as older versions could leave it
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name("demo-grid")
            some = _search(uri).iloc[0]
            client.create_run(exp.experiment_id, tags={"run_id": some["tags.run_id"]})
        procs = [_sync_process(output, uri) for _ in range(8)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, [err[-500:] for _, err in outs]
        df = _search(uri)
        assert len(df) == 3 and df["tags.run_id"].is_unique, round_
        assert set(df["status"]) <= {"FINISHED", "FAILED"}
