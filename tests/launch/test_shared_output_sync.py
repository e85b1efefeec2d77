"""Two grids launched into one output (they share an FP parent, or a user reuses the directory): every
launch's MLflow sync copies all runs of the output, so it must put each run in its own grid's experiment,
not in the launching grid's, or every run shows up once per grid. (Found by the soak: 15 of 16 run ids had
two MLflow runs.)"""
from __future__ import annotations

from collections import Counter

import pytest
import yaml

from tests.matrix.support import run_matrix

TASK = {"dataset": "optdigits", "archs": ["dann_digits"], "recipe": "tiny", "test_subsample": 100}
RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "steps_per_epoch": 3}


def _grid(tmp_path, name: str, seed: int):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "methods": ["fp"], "bits": ["4/4"], "seeds": [seed],
        "tasks": [TASK],
        "recipes": {"tiny": {"full": {"fp": RECIPE, "qat": RECIPE}}}}))
    return path


@pytest.mark.slow  # two launches and two MLflow syncs: about 10 s on an idle 2-core machine, 95 s loaded
def test_two_grids_in_one_output_give_one_mlflow_run_per_run_id(tmp_path):
    from mlflow.tracking import MlflowClient

    output = tmp_path / "shared"
    for name, seed in (("grid-a", 0), ("grid-b", 1)):
        out = run_matrix("--grid", str(_grid(tmp_path, name, seed)), "--launcher", "debug", "--output",
                         str(output))
        assert out.returncode == 0, out.stdout + out.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{output / 'mlflow.db'}")
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    runs = client.search_runs(list(experiments.values()))
    assert len(runs) == 2 and len(Counter(r.data.tags["run_id"] for r in runs)) == 2
    assert {r.data.tags["grid"] for r in runs} == {"grid-a", "grid-b"}
    for run in runs:  # each in the experiment of its own grid
        assert run.info.experiment_id == experiments[run.data.tags["grid"]]
