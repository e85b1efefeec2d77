"""The TTA run kind: its identity, its place in a grid, and (slow) a tiny stream end to end through the
grid's own launcher, from an FP run through an LSQ run to every TTA method and the CoTTA-layout table."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.tta_table import collect_tta, tta_tables
from benchmarks import run_matrix
from benchmarks.data.streams import StreamSpec
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid, parse_grid
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.tta_spec import TtaSpec, spec_from_dict

REPO = Path(__file__).resolve().parents[2]


def _parent() -> RunSpec:
    return RunSpec(task=TaskSpec("syndigits-synth"), arch="dann_digits", method="lsq", w_bits=4, a_bits=4,
                   recipe=Recipe(epochs=1), fp_recipe=Recipe(epochs=1))


def test_tta_run_ids_are_stable_and_depend_on_every_part():
    spec = TtaSpec(_parent(), "tent", StreamSpec(size=100))
    assert spec.run_id == TtaSpec(_parent(), "tent", StreamSpec(size=100)).run_id
    others = {TtaSpec(_parent(), "bn", StreamSpec(size=100)).run_id,
              TtaSpec(_parent(), "tent", StreamSpec(size=100, seed=1)).run_id,
              TtaSpec(_parent(), "tent", StreamSpec(size=100), {"lr": 1e-4}).run_id,
              TtaSpec(_parent().with_(w_bits=2), "tent", StreamSpec(size=100)).run_id}
    assert spec.run_id not in others and len(others) == 4
    assert spec.parent() == _parent() and spec.to_dict()["init_from"] == _parent().run_id
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert isinstance(again, TtaSpec) and again.run_id == spec.run_id
    assert isinstance(spec_from_dict(_parent().to_dict()), RunSpec)


def test_a_tta_parent_must_be_quantized():
    with pytest.raises(ValueError, match="must not be an FP run"):
        TtaSpec(_parent().with_(method="fp", fp_recipe=None), "tent")


def test_the_tta_grid_chains_fp_quantized_and_tta_runs():
    specs = expand(load_grid("tta"), "quick")
    fp = [s for s in specs if isinstance(s, RunSpec) and s.method == "fp"]
    lsq = [s for s in specs if isinstance(s, RunSpec) and s.method == "lsq"]
    ptq = [s for s in specs if isinstance(s, RunSpec) and s.method == "ttaq"]  # TTAQ-recon's PTQ side
    tta = [s for s in specs if isinstance(s, TtaSpec)]
    assert len(fp) == 1 and len(lsq) == 3 and len(ptq) == 3 and len(tta) == 30  # quick: offline digits only
    assert {(s.w_bits, s.a_bits) for s in lsq} == {(2, 4), (4, 4), (8, 8)}
    assert all(s.parent() == fp[0] for s in lsq + ptq)  # one FP parent for the QAT and the PTQ runs
    assert {s.method for s in tta} == {"source", "bn", "tent", "cotta", "ttaq"}
    assert {s.parent().run_id for s in tta} == {s.run_id for s in lsq + ptq}
    assert all(s.stream.severity == 5 and s.stream.size == 500 for s in tta)
    full = expand(load_grid("tta"), "full")
    sources = {s.stream.source for s in full if isinstance(s, TtaSpec)}
    assert sources == {"synthetic", "cifar10-c", "cifar100-c"}


def test_a_bad_tta_section_fails_in_one_line():
    grid = {"name": "g", "methods": ["lsq"], "bits": ["4/4"], "seeds": [0],
            "tasks": [{"dataset": "syndigits-synth", "archs": ["dann_digits"], "recipe": "r"}],
            "recipes": {"r": {"quick": {"fp": {"epochs": 1}, "qat": {"epochs": 1}}}},
            "tta": {"methods": ["tent"], "parents": ["lsq"], "streams": {"quick": {"severity": 9}}}}
    with pytest.raises(ValueError, match="invalid severity 9"):
        expand(parse_grid(grid), "quick")
    grid["tta"] = {"methods": ["eata"], "parents": ["lsq"], "streams": {"quick": {}}}
    with pytest.raises(ValueError, match="unknown TTA method 'eata'"):
        expand(parse_grid(grid), "quick")


def test_dry_run_lists_the_tta_runs(tmp_path, capsys):
    args = ["--grid", "tta", "--profile", "quick", "--dry-run", "--output", str(tmp_path)]
    assert run_matrix.main(args) == 0
    out = capsys.readouterr().out
    listed = [line.split() for line in out.splitlines() if re.match(r"^[0-9a-f]{16}  ", line)]
    # FP, then LSQ and TTAQ-recon's PTQ at three W/A, then five TTA methods on each of those six parents
    assert len(listed) == 1 + 6 + 30 and all(row[1] == "not_launched" for row in listed)
    assert sorted(row[2] for row in listed if row[3] == "W4/A4") == sorted(
        ["lsq", "ttaq"] + [f"{tta}<{parent}" for tta in ("bn", "cotta", "source", "tent", "ttaq")
                           for parent in ("lsq", "ttaq")])


TINY_GRID = """
name: tta-tiny
methods: [fp, lsq]
bits: ["4/4"]
seeds: [0]
tasks:
  - {dataset: syndigits-synth, archs: [dann_digits], recipe: r, test_subsample: 100}
recipes:
  r:
    quick:
      fp: {epochs: 1, batch_size: 32, lr: 0.05, schedule: cosine, steps_per_epoch: 15}
      qat: {epochs: 1, batch_size: 32, lr: 0.01, schedule: cosine, steps_per_epoch: 5}
tta:
  methods: [source, bn, tent, cotta, ttaq]
  parents: [lsq]
  hparams: {cotta: {augmentations: 2}}
  streams:
    quick: {corruptions: [gaussian_noise, fog, jpeg_compression], size: 30, batch_size: 15}
"""


@pytest.mark.slow
def test_tiny_stream_end_to_end(tmp_path):
    grid = tmp_path / "tta-tiny.yaml"
    grid.write_text(TINY_GRID)
    output = tmp_path / "out"
    run = subprocess.run([sys.executable, "benchmarks/run_matrix.py", "--grid", str(grid), "--profile",
                          "quick", "--launcher", "debug", "--output", str(output), "--no-sync"],
                         cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = collect_tta(output)
    assert sorted(r["tta"] for r in rows) == ["bn", "cotta", "source", "tent", "ttaq"]
    for row in rows:
        assert row["corruptions"] == ("gaussian_noise", "fog", "jpeg_compression")
        assert len(row["error"]) == 3 and all(0 <= e <= 100 for e in row["error"])
        assert row["mean"] == pytest.approx(sum(row["error"]) / 3)
    (title, frame), = tta_tables(rows)
    assert list(frame.columns[4:8]) == ["gaussian", "fog", "jpeg", "mean"]
    assert list(frame["method"]) == ["Source", "BN-adapt", "TENT", "CoTTA (augmentations=2)", "TTAQ-recon"]
    status = subprocess.run([sys.executable, "benchmarks/run_matrix.py", "--grid", str(grid), "--profile",
                             "quick", "--status", "--output", str(output)], cwd=REPO, capture_output=True,
                            text=True)
    assert "done 7" in status.stdout, status.stdout
    # Through MLflow, as from the run dirs: the tables of test accuracy leave the TTA runs to tta_table.py.
    from analysis.collect import collect_mlflow, collect_runs
    from benchmarks.tracking.mlflow_sync import sync_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync_runs(output, uri, log=lambda _: None)
    from_disk = collect_runs(output)[0]
    from_mlflow = collect_mlflow(uri, ["tta-tiny"])[0]
    assert sorted(from_mlflow["method"]) == sorted(from_disk["method"]) == ["fp", "lsq"]
    # ... and the report of the output has the TTA section in CoTTA's layout beside the accuracy tables.
    from analysis import report

    assert report.main(["--runs", str(output), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    index = (tmp_path / "report" / "index.md").read_text()
    assert "## Continual test-time adaptation" in index and "| gaussian | fog | jpeg | mean |" in index
    assert (tmp_path / "report" / "tables" / "tta.tex").is_file()
