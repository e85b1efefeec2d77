"""DomainBed's image suites in the domaingen grid (full profile: ResNet-50 with frozen BatchNorm, DomainBed's
image recipe) and end to end on a tiny fake PACS: ERM and QT-DoG through run_matrix into the DomainBed
table."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from analysis.domainbed import load_dg_runs, report
from benchmarks.matrix.cost import gpu_hours, images_per_step
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"pacs": {"A", "C", "P", "S"}, "vlcs": {"C", "L", "S", "V"}, "officehome": {"A", "C", "P", "R"},
           "terraincognita": {"L100", "L38", "L43", "L46"},
           "domainnet": {"clip", "info", "paint", "quick", "real", "sketch"}}


def test_image_suites_are_full_profile_tasks_with_domainbeds_recipe():
    specs = [s for s in expand(load_grid("domaingen"), "full") if s.arch == "resnet50"]
    assert len(specs) == 22 * 81  # 22 test domains x the 81 runs per task of the MNIST tasks
    assert {d: {s.task.target for s in specs if s.task.dataset == d} for d in TARGETS} == TARGETS
    assert {str(s.arch_options) for s in specs} == {str({"pretrained": "imagenet", "freeze_bn": True})}
    assert {(s.recipe.optimizer, s.recipe.lr, s.recipe.batch_size, s.recipe.weight_decay) for s in specs} == \
        {("adam", 5e-5, 32, 0.0)}
    steps = {(s.task.dataset == "domainnet", s.method == "fp"): s.recipe.epochs * s.recipe.steps_per_epoch
             for s in specs}
    assert steps == {(False, True): 5000, (False, False): 3000, (True, True): 15000, (True, False): 13000}
    assert {s.recipe.steps_per_epoch for s in specs} == {200, 1000}  # QT-DoG's evaluation intervals
    post_bn = Counter((s.w_bits, s.a_bits) for s in specs if s.method in ("alignq", "climbq", "emaq"))
    assert set(post_bn) == {(2, 2), (4, 4), (8, 8)}  # ResNet-50 has BatchNorm: activations quantized
    pacs = next(s for s in specs if s.task.dataset == "pacs" and s.method == "fp")
    assert images_per_step(pacs) == 3 * 32  # 32 per training domain
    # the dry run's estimate: 5,000 steps x 96 images at the assumed 800 ResNet-50 images/s, +10 % evaluation
    assert gpu_hours(pacs) == pytest.approx(5000 * 96 / 800 * 1.1 / 3600)


def _fake_pacs(root: Path, per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for d, domain in enumerate(("art_painting", "cartoon", "photo", "sketch")):
        for c in range(7):
            folder = root / "PACS" / domain / f"class{c}"
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 60, (20, 16, 3)) + 25 * c + 10 * d  # class- and domain-dependent
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{k}.png")


@pytest.mark.slow
def test_fake_pacs_runs_erm_and_qtdog_on_the_frozen_bn_resnet50_into_the_table(tmp_path: Path):
    """PACS at 32 px (``pacs@32``: DomainBed's augmentation, ResNet-50's ImageNet stem) on random weights."""
    _fake_pacs(tmp_path / "data")
    grid = yaml.safe_load((REPO / "benchmarks/grids/domaingen.yaml").read_text())
    recipe = {"batch_size": 4, "lr": 5e-5, "optimizer": "adam", "weight_decay": 0.0, "schedule": "constant",
              "steps_per_epoch": 2}
    grid.update(name="domaingen-pacs-tiny", methods=["fp", "qtdog"], seeds=[0],
                method_bits={"qtdog": ["7/32"]},
                arch_options={"resnet50": {"freeze_bn": True}},  # no ImageNet weights offline
                tasks=[{"dataset": "pacs@32", "target": "S", "archs": ["resnet50"], "recipe": "images"}],
                recipes={"images": {"quick": {"fp": {"epochs": 1, **recipe},  # a QT-DoG step costs ~8 s here
                                              "qat": {"epochs": 1, **recipe, "steps_per_epoch": 1}}}})
    path, output = tmp_path / "tiny.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(grid))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", str(path),
                           "--profile", "quick", "--output", str(output),
                           "--data-root", str(tmp_path / "data"),
                           "--launcher", "debug", "--no-sync", "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = load_dg_runs(output)
    assert sorted(r.method for r in runs) == ["fp", "qtdog"]
    text = report(output, ("train-val",))
    assert "### pacs@32, train-val" in text
    rows = {line.split("|")[1].strip(): line.split("|") for line in text.splitlines()
            if line.startswith("| ")}
    for method in ("FP", "QT-DoG"):
        assert 0.0 <= float(rows[method][6]) <= 100.0  # the S column (A, C, P, S) holds a measured accuracy
    finals = sorted(output.rglob("final.pt"))
    assert len(finals) == 2
    for final in finals:  # frozen BN: the random-init running statistics (0, 1) never moved
        state = torch.load(final, map_location="cpu", weights_only=True)
        stats = {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}
        assert len(stats) == 2 * 53
        assert all(bool((v == float(k.endswith("var"))).all()) for k, v in stats.items())
