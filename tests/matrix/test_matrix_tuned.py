"""run_matrix --hparams tuned: frozen values reach the run specs; the study is traceable from records and
MLflow; a file tuned for another run (architecture options, layer policy, recipe, ...) is refused before
anything runs."""
from __future__ import annotations

import json

import mlflow
import pytest

from benchmarks.run.rundir import RunDir, read_json
from benchmarks.tune import main as tune
from benchmarks.tuning.frozen import FORMAT, recorded_spec, tuned_path
from benchmarks.tuning.grid_cell import grid_cell_spec
from benchmarks.tuning.search_spaces import search_space
from tests.matrix.support import run_matrix
from tests.tuning.support import ARCH_OPTIONS, LAYER_POLICY, optioned_grid

pytestmark = pytest.mark.slow


def test_tuned_hparams_reach_specs_records_and_mlflow(tmp_path):
    tuned_dir, output = tmp_path / "tuned", tmp_path / "out"
    path = tuned_path("dorefa", "optdigits", "dann_digits", 4, 4, tuned_dir)
    path.parent.mkdir(parents=True)
    study = {"name": "dorefa-optdigits-w4a4", "storage": "/somewhere/journal.log", "best_trial": 3,
             "best_value": 91.0, "n_trials": 8, "n_complete": 6, "n_pruned": 2, "sampler": "tpe", "seed": 0}
    base = grid_cell_spec("smoke", "full", "dorefa", "optdigits", None, "dann_digits", "4/4")
    path.write_text(json.dumps({
        "format": FORMAT, "method": "dorefa", "task": "optdigits", "arch": "dann_digits", "w_bits": 4,
        "a_bits": 4, "spec": recorded_spec(base, search_space("dorefa")),
        "hparams": {"rescale_by_max": True}, "recipe_overrides": {"lr": 0.003, "weight_decay": 0.0005},
        "study": study, "code_version": "test", "created": "2026-11-23"}))
    out = run_matrix("--grid", "smoke", "--methods", "dorefa", "--hparams", "tuned", "--tuned-dir",
                     str(tuned_dir), "--launcher", "debug", "--output", str(output))
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


def test_study_of_the_grid_cell_applies_and_a_mismatched_file_exits_2(tmp_path):
    """A study of the optioned grid's LSQ cell (architecture option, layer policy) is frozen and applied to
    the matrix, whose runs share the study's FP parent; the same file without the option, or in format 1, is
    refused with one line."""
    grid, tuned_dir = optioned_grid(tmp_path), tmp_path / "tuned"
    cell = ["--method", "lsq", "--dataset", "optdigits", "--arch", "dann_digits", "--bits", "4/4"]
    assert tune(["--grid", str(grid), "--profile", "quick", *cell, "--trials", "1", "--output",
                 str(tmp_path / "tune"), "--freeze", "--hparams-dir", str(tuned_dir), "--no-mlflow"]) == 0
    path = tuned_path("lsq", "optdigits", "dann_digits", 4, 4, tuned_dir)
    frozen = json.loads(path.read_text())
    matrix = ["--grid", str(grid), "--profile", "quick", "--methods", "lsq", "--hparams", "tuned",
              "--tuned-dir", str(tuned_dir), "--launcher", "debug", "--no-sync"]
    out = run_matrix(*matrix, "--output", str(tmp_path / "applied"))
    assert out.returncode == 0, out.stdout + out.stderr
    headers = [read_json(p) for p in (tmp_path / "applied" / "runs").glob("*/spec.json")]
    qat = next(h["spec"] for h in headers if h["spec"]["method"] == "lsq")
    assert qat["recipe"]["lr"] == frozen["recipe_overrides"]["lr"]
    assert qat["arch_options"] == ARCH_OPTIONS and qat["layer_policy"] == LAYER_POLICY
    best = read_json(RunDir.of(frozen["study"]["output"], frozen["study"]["best_run_id"]).spec_path)["spec"]
    assert qat["init_from"] == best["init_from"]  # the study's FP parent is the matrix's FP run

    for edit, field in ((lambda data: data["spec"].update(arch_options={}), "arch_options"),
                        (lambda data: data.update(format=1), "format 1")):
        data = json.loads(json.dumps(frozen))
        edit(data)
        path.write_text(json.dumps(data))
        refused = tmp_path / f"refused-{field.replace(' ', '')}"
        out = run_matrix(*matrix, "--output", str(refused))
        assert out.returncode == 2 and field in out.stderr, out.stdout + out.stderr
        assert out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not refused.exists()  # refused before anything ran
