"""The report's comparison sections: FP-normalised scores, the aggregate tables and figures, and how the
report degrades when the data cannot support a statistic (one seed, one task, two methods)."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import aggregate as agg
from analysis.collect import collect_runs
from analysis.comparisons import aggregate_tables, paired_table
from analysis.render import to_markdown
from analysis.report import make_report
from analysis.scores import normalised_scores
from tests.analysis.fixtures import STD_TASK, write_run

FP = 95.0
# method -> offset to FP per bit width; seed s adds s points to every method (a shared seed effect)
LEVELS = {"lsq": {2: -20.0, 4: -5.0, 8: -1.0}, "dorefa": {2: -30.0, 4: -9.0, 8: -2.0},
          "emaq": {2: -15.0, 4: -3.0, 8: -0.5}}


def _grid(root, seeds=(0, 1, 2), bits=(2, 4, 8), methods=("lsq", "dorefa", "emaq")):
    for seed in seeds:
        write_run(root / "runs", STD_TASK, "fp", 32, seed, FP + seed)
        for method in methods:
            for b in bits:
                write_run(root / "runs", STD_TASK, method, b, seed, FP + seed + LEVELS[method][b] + 0.1 * b)
    return collect_runs(root)[0]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return _grid(tmp_path_factory.mktemp("grid"))


def test_scores_are_normalised_by_the_runs_own_fp_parent(grid):
    scores = normalised_scores(grid, "last")
    assert scores.entrants == ["lsq", "dorefa", "emaq"]  # the papers' order
    assert scores.tasks == [f"syndigits-synth · dann_digits · W{b}/A{b}" for b in (2, 4, 8)]
    expected = [(FP + s + LEVELS["emaq"][4] + 0.4) / (FP + s) for s in (0, 1, 2)]
    assert scores.scores["emaq"][1] == pytest.approx(expected)
    assert scores.runs_per_task() == 3 and not scores.notes


def test_aggregate_tables_use_the_reference_checked_functions(grid):
    scores = normalised_scores(grid, "last")
    result = aggregate_tables(scores, "last", "lsq", reps=500, seed=1)
    table = result.summary.set_index("method")
    emaq = scores.scores["emaq"]
    assert table.loc["emaq", "IQM"] == f"{agg.iqm(emaq):.3f}"
    low, high = agg.iqm_interval(emaq, 500, 1)
    assert table.loc["emaq", "IQM 95% CI"] == f"[{low:.3f}, {high:.3f}]"
    assert table.loc["emaq", "P(> lsq)"] == "1.000" and table.loc["dorefa", "P(> lsq)"] == "0.000"
    assert table.loc["lsq", "P(> lsq)"] == "0.500"
    # every task ranks emaq > lsq > dorefa: mean ranks 1, 2, 3; Friedman over 3 tasks
    assert result.mean_ranks == {"lsq": 2.0, "dorefa": 3.0, "emaq": 1.0}
    assert result.cd == pytest.approx(agg.critical_difference(3, 3))
    assert list(result.ranks["method"]) == ["emaq", "lsq", "dorefa"]
    assert "fewer than 5 tasks" in result.ranks_caption and not result.not_shown


def test_paired_table_against_the_baseline(grid):
    table, caption = paired_table(grid, "last", "lsq")
    emaq4 = table[(table["method"] == "emaq") & (table["W/A"] == "W4/A4")].iloc[0]
    assert emaq4["n pairs"] == 3 and emaq4["Δ vs baseline"] == "+2.0" and emaq4["verdict"] == "better"
    assert emaq4["paired t p"] == "0.000" and emaq4["Wilcoxon p"] == "0.250"  # 3 pairs: Wilcoxon can't reject
    assert list(table["method"][:2]) == ["dorefa", "emaq"] and "lsq" not in set(table["method"])
    assert "same FP parent" in caption and "Wilcoxon" in caption


def test_report_draws_the_aggregate_figures(grid, tmp_path):
    index, _ = make_report(grid, grid.iloc[:0], tmp_path, "grid", figure_formats=("png",), bootstrap_reps=200)
    text = index.read_text()
    for name in ("aggregate__performance_profiles", "aggregate__critical_difference"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert f"figures/{name}.png" in text
    assert "Friedman chi² = 6.00" in text and "CD = " in text


def test_one_seed_says_why_intervals_are_missing(tmp_path):
    runs = _grid(tmp_path, seeds=(0,))
    index, tables = make_report(runs, runs.iloc[:0], tmp_path / "r", "one seed", figure_formats=("png",),
                                bootstrap_reps=200)
    text = index.read_text()
    assert "95% intervals: a method has a single run (seed) on some task" in text
    assert all(c.n <= 1 for c in tables[0].cells.values())
    assert "±" not in to_markdown(tables[0]).split("\n\n")[1]  # no error bar with one run
    assert "**" not in text.split("## Tables")[1].split("## Each method")[0]  # no bold with one seed
    assert "n < 2: no test" in (tmp_path / "r" / "tables" / "paired_vs_lsq.md").read_text()
    assert (tmp_path / "r" / "figures" / "aggregate__performance_profiles.png").exists()  # no bands


def test_one_task_says_why_ranks_are_missing(tmp_path):
    runs = _grid(tmp_path, bits=(4,))
    index, _ = make_report(runs, runs.iloc[:0], tmp_path / "r", "one task", figure_formats=("png",),
                           bootstrap_reps=200)
    text = index.read_text()
    assert "ranks: 1 task(s); ranking needs at least 2 tasks" in text
    assert not (tmp_path / "r" / "figures" / "aggregate__critical_difference.png").exists()


def test_no_common_task_and_no_baseline(tmp_path):
    write_run(tmp_path / "runs", STD_TASK, "fp", 32, 0, FP)
    write_run(tmp_path / "runs", STD_TASK, "dorefa", 4, 0, 80.0)
    write_run(tmp_path / "runs", STD_TASK, "emaq", 2, 0, 70.0)
    runs = collect_runs(tmp_path)[0]
    scores = normalised_scores(runs, "last")
    assert scores.tasks == [] and "not run by every method" in scores.notes[0]
    result = aggregate_tables(scores, "last", "lsq", reps=200)
    assert result.summary.empty and "no task was run by every method" in result.summary_caption
    table, caption = paired_table(runs, "last", "lsq")
    assert table.empty and caption.startswith("No task has finished runs of lsq")
    index, _ = make_report(runs, runs.iloc[:0], tmp_path / "r", "sparse", figure_formats=("png",),
                           bootstrap_reps=200)
    assert "Not shown" in index.read_text()


def test_orphan_runs_are_left_out_with_a_note(tmp_path):
    write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 0, 80.0)  # its FP parent never ran
    scores = normalised_scores(collect_runs(tmp_path)[0], "last")
    assert scores.tasks == [] and "without a finished FP parent" in scores.notes[0]
    assert np.isnan(aggregate_tables(scores, "last").cd)


def test_paired_table_keeps_setups_apart(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs", STD_TASK, "fp", 32, seed, FP)
        write_run(tmp_path / "runs", STD_TASK, "lsq", 4, seed, 90.0 + seed)
        write_run(tmp_path / "runs", STD_TASK, "emaq", 4, seed, 91.0 + seed)
        write_run(tmp_path / "runs", STD_TASK, "emaq", 4, seed, 95.0 + seed, tuned=True)
        write_run(tmp_path / "runs", STD_TASK, "dorefa", 4, seed, 85.0 + seed, policy=("fp", "fp"))
    table, caption = paired_table(collect_runs(tmp_path)[0], "last", "lsq")
    rows = table.set_index("method")
    assert list(table["method"]) == ["dorefa", "emaq [default]", "emaq [tuned]"]
    assert rows.loc["emaq [default]", "Δ vs baseline"] == "+1.0"
    assert rows.loc["emaq [tuned]", "Δ vs baseline"] == "+5.0"
    assert list(rows["setup"]) == ["differs", "same", "differs"] and "setup: 'differs'" in caption
