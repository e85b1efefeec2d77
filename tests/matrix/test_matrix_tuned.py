"""run_matrix --hparams tuned: frozen values reach the run specs; the study is traceable from records and MLflow."""
from __future__ import annotations

import json

import mlflow
import pytest

from benchmarks.run.rundir import RunDir, read_json
from benchmarks.tuning.frozen import FORMAT, tuned_path
from tests.matrix.support import run_matrix

pytestmark = pytest.mark.slow


def test_tuned_hparams_reach_specs_records_and_mlflow(tmp_path):
    tuned_dir, output = tmp_path / "tuned", tmp_path / "out"
    path = tuned_path("dorefa", "optdigits", "dann_digits", 4, 4, tuned_dir)
    path.parent.mkdir(parents=True)
    study = {"name": "dorefa-optdigits-w4a4", "storage": "/somewhere/journal.log", "best_trial": 3,
             "best_value": 91.0, "n_trials": 8, "n_complete": 6, "n_pruned": 2, "sampler": "tpe", "seed": 0}
    path.write_text(json.dumps({
        "format": FORMAT, "method": "dorefa", "task": "optdigits", "arch": "dann_digits", "w_bits": 4, "a_bits": 4,
        "hparams": {"rescale_by_max": True}, "recipe_overrides": {"lr": 0.003, "weight_decay": 0.0005},
        "study": study, "code_version": "test", "created": "2026-11-23"}))
    out = run_matrix("--grid", "smoke", "--methods", "dorefa", "--hparams", "tuned", "--tuned-dir", str(tuned_dir),
                     "--launcher", "debug", "--output", str(output))
    assert out.returncode == 0, out.stdout + out.stderr
    headers = [read_json(p) for p in (output / "runs").glob("*/spec.json")]
    qat = next(h for h in headers if h["spec"]["method"] == "dorefa")
    assert qat["spec"]["hparams"] == {"rescale_by_max": True}
    assert qat["spec"]["recipe"]["lr"] == 0.003 and qat["spec"]["recipe"]["weight_decay"] == 0.0005
    assert qat["provenance"]["study"]["name"] == study["name"] and qat["provenance"]["file"] == str(path)
    mlflow.set_tracking_uri(f"sqlite:///{output / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["smoke"])
    row = runs[runs["tags.run_id"] == qat["run_id"]].iloc[0]
    assert row["tags.tuned_study"] == study["name"] and row["tags.tuned_storage"] == study["storage"]
