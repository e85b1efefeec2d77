"""Grids expand to validated run specs; the run_matrix CLI refuses bad input with one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.matrix.expand import Filters, expand
from benchmarks.matrix.grids import GridError, available_grids, load_grid
from benchmarks.run.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["smoke", "demo", "standard", "multidomain", "longtail",
                                  "rotated-mnist-cpu"])
def test_committed_grids_expand(name):
    assert name in available_grids()
    grid = load_grid(name)
    for profile in ("full", "quick"):
        specs = expand(grid, profile)
        fp = [s for s in specs if s.method == "fp"]
        qat = [s for s in specs if s.method != "fp"]
        assert specs[: len(fp)] == fp, "FP runs come first"
        assert {s.parent().run_id for s in qat} <= {s.run_id for s in fp}
        assert len({s.run_id for s in specs}) == len(specs)


def test_longtail_counts_and_filters():
    grid = load_grid("longtail")
    specs = expand(grid, "full")
    per_task_arch = sum(len(t.archs) for t in grid.tasks) * len(grid.seeds)
    assert len(specs) == per_task_arch * (1 + 6 * len(grid.bits))
    subset = expand(grid, "full", Filters(methods=("lsq",), bits=("4/4",), seeds=(0,),
                                          datasets=("cifar10-lt-r100",)))
    assert sorted(s.method for s in subset) == ["fp", "fp", "lsq", "lsq"]  # two archs, FP parents included


def test_gpu_hour_estimate_follows_the_measured_cost_of_each_method():
    from benchmarks.matrix.cost import gpu_hours, measured_step_ratios

    ratios = measured_step_ratios()

    specs = expand(load_grid("longtail"), "full", Filters(datasets=("cifar10-lt-r100",), archs=("resnet20",),
                                                        bits=("4/4",), seeds=(0,)))
    hours = {s.method: gpu_hours(s) for s in specs}
    assert set(hours) == set(ratios)
    fp = specs[0]
    # CIFAR-10-LT rho=100 has 12,406 training images: epochs x steps x batch / 17,000 images/s, x 1.1 for eval
    steps = int(12406 * (1 - fp.task.val_fraction)) // fp.recipe.batch_size
    assert hours["fp"] == pytest.approx(fp.recipe.epochs * steps * fp.recipe.batch_size / 17000 * 1.1 / 3600)
    qat = next(s for s in specs if s.method == "lsq")
    for method, ratio in ratios.items():
        if method != "fp":  # QAT runs share a recipe, so their hours scale with the measured step ratio
            assert hours[method] / hours["lsq"] == pytest.approx(ratio / ratios["lsq"])
    assert hours["alignq"] > hours["emaq"] > hours["lsq"] and qat.recipe.epochs > 0


def test_the_estimate_follows_the_measured_ratios_file(tmp_path, monkeypatch):
    from benchmarks.matrix import cost

    specs = expand(load_grid("smoke"), "full")
    qat = next(s for s in specs if s.method != "fp")
    before = cost.gpu_hours(qat)
    record = json.loads(cost.DEFAULT_RATIOS.read_text())
    record["step_ratio_vs_fp"][qat.method] *= 2
    record.update(date="2030-01-01", device="a test GPU")
    changed = tmp_path / "ratios.json"
    changed.write_text(json.dumps(record))
    monkeypatch.setenv("QBENCH_COST_RATIOS", str(changed))
    assert cost.gpu_hours(qat) == pytest.approx(2 * before)
    assert "2030-01-01" in cost.source_line() and "a test GPU" in cost.source_line()
    out = _cli("--grid", "smoke", "--dry-run", "--output", str(tmp_path / "out"))  # the CLI says it too
    assert out.returncode == 0 and "measured 2030-01-01 on a test GPU" in out.stdout, out.stdout + out.stderr


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_dry_run_lists_runs_counts_and_estimate(tmp_path):
    out = _cli("--grid", "longtail", "--dry-run", "--output", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    assert "runs by state: not_launched 1500 (total 1500)" in out.stdout
    assert "estimated GPU-hours" in out.stdout and out.stdout.count("\n") > 1500
    assert not (tmp_path / "o").exists(), "a dry run writes nothing"


BAD = [
    (["--grid", "nope"], "unknown grid 'nope'; valid: demo, domaingen, imagenet, longtail"),
    (["--grid", "smoke", "--methods", "foo"], "--methods value 'foo' is not in grid 'smoke'"),
    (["--grid", "smoke", "--bits", "1/1"], "invalid weight bits 1"),
    (["--grid", "smoke", "--bits", "4/x"], "invalid bits '4/x'"),
    (["--grid", "smoke", "--bits", "33/33"], "invalid weight bits 33"),
    (["--grid", "smoke", "--archs", "vgg"], "--archs value 'vgg' is not in grid 'smoke'"),
    (["--grid", "smoke", "--launcher", "k8s"], "unknown launcher 'k8s'; valid: debug, local, slurm"),
    (["--grid", "smoke", "--profile", "huge"], "unknown profile 'huge'; valid: full, quick"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_cli_input_is_one_line_exit_2(args, message, tmp_path):
    out = _cli(*args, "--output", str(tmp_path))
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr


@pytest.mark.parametrize("mutation,message", [
    ("methods: [fp, magic]", "unknown method 'magic'; valid: fp, lsq"),
    ("tasks: [{dataset: imagenet9, archs: [dann_digits], recipe: tiny}]", "unknown dataset 'imagenet9'"),
    ("tasks: [{dataset: optdigits, archs: [vgg11], recipe: tiny}]", "unknown architecture 'vgg11'; valid:"),
    ("bits: ['4/x']", "invalid bits '4/x'"),
    ("seeds: [0]\nepochs: 3", "unknown key 'epochs'"),
    ("tasks: [{dataset: optdigits, archs: [dann_digits], recipe: nope}]", "names recipe 'nope'"),
    ("methods: [fp\n  bad: [", "YAML error"),
    ("name: ../../..", "grid name '../../..' is not a plain name"),
    ("name: a/b", "grid name 'a/b' is not a plain name"),
])
def test_malformed_grid_files_never_touch_finished_runs(mutation, message, tmp_path):
    text = (REPO / "benchmarks/grids/smoke.yaml").read_text()
    key = mutation.split(":")[0]
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
    if key == "tasks":
        lines = [line for line in lines if not line.startswith("  - {dataset")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n" + mutation + "\n")
    finished = RunDir.of(tmp_path / "out", "0123456789abcdef").path
    finished.mkdir(parents=True)
    RunDir(finished).mark_done()
    before = sorted(p.name for p in finished.iterdir())
    out = _cli("--grid", str(bad), "--output", str(tmp_path / "out"))
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert sorted(p.name for p in finished.iterdir()) == before


def test_grid_error_type():
    with pytest.raises(GridError):
        load_grid("does-not-exist")


def test_one_layer_policy_for_every_method_of_a_grid(tmp_path):
    """A grid that says nothing runs every method with first and last layer at 8 bits (a fair comparison);
    ``paper`` keeps each method's own convention; anything else is a one-line error."""
    text = (REPO / "benchmarks/grids/smoke.yaml").read_text()
    text = text.replace("methods: [fp, lsq, dorefa]", "methods: [fp, lsq, alignq]")
    fair = tmp_path / "fair.yaml"
    kept = [line for line in text.splitlines() if not line.startswith("layer_policy")]
    fair.write_text("\n".join(kept) + "\n")
    qat = [s for s in expand(load_grid(str(fair)), "full") if s.method != "fp"]
    assert {s.method for s in qat} == {"lsq", "alignq"}
    assert all(s.layer_policy == {"first": "8bit", "last": "8bit"} for s in qat)
    assert all(s.layer_policy is None for s in expand(load_grid("smoke"), "full"))  # smoke says `paper`
    bad = tmp_path / "bad.yaml"
    bad.write_text(fair.read_text() + "layer_policy: {first: 4bit, last: fp}\n")
    with pytest.raises(GridError, match="layer_policy .*; valid: 'paper' or"):
        load_grid(str(bad))
