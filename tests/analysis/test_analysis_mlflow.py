"""The MLflow source gives the same tables as the run dirs it mirrors (issue #7 acceptance)."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.collect import collect_mlflow, collect_runs, read_curves, read_mlflow_curves
from analysis.coverage import coverage_table
from analysis.render import to_csv, to_latex, to_markdown
from analysis.tables import all_tables
from tests.analysis.fixtures import log_to_mlflow, make_sweep

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    store = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    log_to_mlflow(root, uri, "fixture", store / "artifacts")
    return root, uri


def test_same_tables_from_both_sources(sources):
    root, uri = sources
    from_dirs, _ = collect_runs(root)
    from_mlflow, info = collect_mlflow(uri, ["fixture"])
    assert (info.n_done, info.n_incomplete, info.n_failed) == (25, 0, 1)  # incomplete runs are not synced
    incomplete = from_dirs.loc[from_dirs["status"] == "incomplete", "run_id"].tolist()
    assert sorted(from_mlflow["run_id"]) == sorted(set(from_dirs["run_id"]) - set(incomplete))
    dirs_tables, mlflow_tables = all_tables(from_dirs), all_tables(from_mlflow)
    assert [t.name for t in mlflow_tables] == [t.name for t in dirs_tables]
    for a, b in zip(dirs_tables, mlflow_tables):
        assert (to_markdown(a), to_latex(a), to_csv(a)) == (to_markdown(b), to_latex(b), to_csv(b))
    # failed runs come through as such; the unsynced incomplete run is "missing" instead of "incomplete"
    cov_dirs, cov_mlflow = coverage_table(from_dirs), coverage_table(from_mlflow)
    differs = (cov_dirs != cov_mlflow).any(axis=1)
    assert differs.sum() == 1
    line = cov_mlflow[differs].iloc[0]
    assert (line["method"], line["W/A"], line["incomplete"], line["missing"]) == ("alignq", "W4/A4", 0, 1)


def test_params_fallback_for_runs_without_spec_artifact(sources):
    """A failed run synced with params only (no spec.json artifact) still gets its spec columns."""
    import mlflow
    from mlflow.entities import Param

    _, uri = sources
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("params-only")
    run = client.create_run(exp, tags={"run_id": "p1", "status": "failed"})
    params = {"task.dataset": "mnist", "task.target": "null", "task.protocol": "standard", "arch": "lenet",
              "method": "lsq", "w_bits": "4", "a_bits": "4", "seed": "1", "layer_policy.first": "8bit",
              "layer_policy.last": "8bit"}
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    df, info = collect_mlflow(uri, ["params-only"])
    rec = df.iloc[0]
    assert info.n_failed == 1 and rec["status"] == "failed" and rec["target"] is None
    assert (rec["dataset"], rec["method"], rec["bits_label"], rec["seed"], rec["policy"]) == \
        ("mnist", "lsq", "W4/A4", 1, "8bit/8bit")


def test_real_sync_gives_the_same_tables(tmp_path):
    """End to end with the project's own MLflow sync (benchmarks/tracking/mlflow_sync.py), when importable."""
    tracking = pytest.importorskip("benchmarks.tracking.mlflow_sync")
    root = make_sweep(tmp_path / "out")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.sync_runs(root, uri)
    from_dirs, from_mlflow = collect_runs(root)[0], collect_mlflow(uri, ["fixture"])[0]
    expected = [to_markdown(t) for t in all_tables(from_dirs)]
    assert [to_markdown(t) for t in all_tables(from_mlflow)] == expected


def test_same_rows_for_done_runs(sources):
    root, uri = sources
    cols = ["run_id", "status", "dataset", "target", "protocol", "arch", "method", "w_bits", "a_bits",
            "bits_label", "seed", "first_layer", "last_layer", "grid", "top1_last", "top1_best", "ece",
            "head_acc", "worst_domain_acc"]
    a = collect_runs(root)[0]
    a = a[a["status"] != "incomplete"][cols].sort_values("run_id").reset_index(drop=True)
    b = collect_mlflow(uri, ["fixture"])[0][cols].sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_curves_from_artifacts(sources):
    root, uri = sources
    runs = collect_runs(root)[0]
    dirs = read_curves(runs.loc[runs["status"] != "incomplete", "source"].tolist())
    mlflow_curves = read_mlflow_curves(uri, ["fixture"])
    key = ["run_id", "epoch"]
    pd.testing.assert_frame_equal(dirs.sort_values(key).reset_index(drop=True),
                                  mlflow_curves.sort_values(key).reset_index(drop=True))


def test_unknown_experiment_is_an_error(sources):
    _, uri = sources
    with pytest.raises(ValueError, match="no MLflow experiment"):
        collect_mlflow(uri, ["nope"])
