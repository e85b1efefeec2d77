"""Figures (each written, non-empty, skipped without data) and the report CLI end to end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import figures
from analysis.collect import collect_runs, read_curves
from analysis.report import main
from tests.analysis.fixtures import make_sweep

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    runs, _ = collect_runs(root)
    return root, runs, read_curves(runs["source"].tolist())


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    """One report run for all checks below, PNG only: PDF font embedding is the slow part (tested below)."""
    root, _, _ = sweep
    out = tmp_path_factory.mktemp("report") / "smoke"
    code = main(["--runs", str(root), "--out", str(out), "--seeds", "0,1,2", "--figure-formats", "png"])
    return code, out


FIGURE_KINDS = {"acc_vs_bits": 3, "hmt": 2, "per_class": 2, "shift_heatmap": 2, "ece_vs_bits": 3,
                "reliability": 4, "curves": 4}


@pytest.mark.parametrize("prefix", sorted(FIGURE_KINDS))
def test_each_figure_writes_a_png(report, prefix):
    _, out = report
    pngs = sorted((out / "figures").glob(f"{prefix}__*.png"))
    assert len(pngs) == FIGURE_KINDS[prefix]  # one per (task, arch[, W/A]) of the fixture sweep
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_pdf_next_to_png(sweep, tmp_path):
    _, runs, _ = sweep
    made = figures.all_figures(runs[runs["task"] == "syndigits-synth"], pd.DataFrame(), tmp_path)
    pngs = [p for paths in made.values() for p in paths]
    assert pngs and all(p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-" for p in pngs)


def test_figures_skip_without_data(sweep, tmp_path):
    _, runs, _ = sweep
    no_lt = runs.assign(medium_acc=float("nan"), tail_acc=float("nan"), per_class_acc=[[]] * len(runs))
    assert figures.plot_hmt_bars(no_lt, tmp_path) is None
    assert figures.plot_per_class(no_lt, tmp_path) is None
    assert figures.plot_training_curves(runs, pd.DataFrame(), tmp_path) is None
    assert figures.plot_shift_heatmap(runs[runs["target"].isna()], tmp_path) is None
    assert figures.plot_acc_vs_bits(runs[runs["method"] == "fp"], tmp_path) is None
    assert figures.all_figures(runs.iloc[0:0], pd.DataFrame(), tmp_path) == {}
    assert not list(tmp_path.iterdir())


def test_report_writes_everything(report, capsys):
    code, out = report
    assert code == 0
    index = (out / "index.md").read_text()
    for name in ("longtail", "shift_dann-digits", "standard", "coverage", "ours_vs_published",
                 "paired_vs_lsq", "aggregate", "ranks"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0
        assert f"tables/{name}.md" in index
    pngs = sorted((out / "figures").glob("*.png"))
    # + the performance profiles; no critical-difference diagram: two methods (the caption says why)
    assert len(pngs) == sum(FIGURE_KINDS.values()) + 1 and all(f"figures/{p.name}" in index for p in pngs)
    assert (out / "figures" / "aggregate__performance_profiles.png").exists()
    assert "Friedman/Nemenyi: 2 method(s); the test needs at least 3" in index
    assert "Selection rule: `last`: last epoch" in index and "How to read a cell" in index
    assert len(pd.read_csv(out / "runs.csv")) == 27
    assert "6/12 cells complete" in index


def test_report_prints_main_table(sweep, tmp_path, capsys):
    root, _, _ = sweep
    out = tmp_path / "r"
    assert main(["--runs", str(root), "--out", str(out), "--no-figures", "--selection", "oracle"]) == 0
    printed = capsys.readouterr().out
    assert "### Long-tail" in printed and "83.0 ± 5.0 (3)" in printed  # FP oracle = last + 1 in the fixture
    assert f"Report: {out / 'index.md'}" in printed and not (out / "figures").exists()
    # the result.json metric names of earlier versions still name their rule
    assert main(["--runs", str(root), "--out", str(out), "--no-figures", "--selection", "top1_best"]) == 0
    assert "83.0 ± 5.0 (3)" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    [], ["--out", "x"], ["--runs", "/no/such/dir", "--out", "x"],
    ["--runs", ".", "--mlflow-uri", "sqlite://", "--out", "x"],
    ["--mlflow-uri", "sqlite:///x.db", "--out", "x"],
    ["--runs", ".", "--out", "x", "--selection", "best"], ["--runs", ".", "--out", "x", "--seeds", "a,b"],
    ["--runs", ".", "--out", "x", "--figure-formats", "svg"],
])
def test_bad_arguments_exit_2_with_one_line(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "error" in err


def test_runs_as_a_script_from_the_repo_root():
    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "analysis/report.py", *args], cwd=REPO, check=False,
                              capture_output=True, text=True)

    proc = script("--help")
    assert proc.returncode == 0 and "--selection" in proc.stdout and "oracle" in proc.stdout
    proc = script("--out", "x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
