"""Bold only beyond noise, ties, n = 1 cells, and cells compared across setups, in all three formats."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from analysis.collect import collect_runs
from analysis.render import to_csv, to_latex, to_markdown
from analysis.tables import standard_table
from tests.analysis.fixtures import STD_TASK, write_run

GROUP = "syndigits-synth · dann_digits|top1"


def _table(tmp_path, runs: dict, **options):
    """``runs``: (method, seed) -> top-1, written with FP parents for every seed; options per method."""
    for seed in sorted({s for _, s in runs}):
        write_run(tmp_path / "runs", STD_TASK, "fp", 32, seed, 95.0)
    for (method, seed), value in runs.items():
        key = method.split("@")[0]
        write_run(tmp_path / "runs", STD_TASK, key, 4, seed, value, **options.get(method, {}))
    table = standard_table(collect_runs(tmp_path)[0])
    cells = {r.label: table.cell(r.key, GROUP) for r in table.rows if not r.is_fp}
    return table, cells


def _csv(table) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(to_csv(table)))
    frame["setup_mark"] = frame["setup_mark"].astype(object).fillna("")
    assert frame["best"].dtype == bool and frame["tie"].dtype == bool
    return frame[frame["kind"] == "value"].set_index("row")


def test_overlapping_seeds_give_no_bold(tmp_path):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("lsq", 2): 92.0,
            ("dorefa", 0): 91.0, ("dorefa", 1): 90.0, ("dorefa", 2): 92.5}
    table, cells = _table(tmp_path, runs)
    assert not any(c.best for c in cells.values())
    assert cells["lsq"].tie and cells["dorefa"].tie  # the highest mean is dorefa's, not beyond noise
    md = to_markdown(table)
    assert "**" not in md.split("\n\n")[1] and "| W4/A4 | lsq | 91.0 ± 2.5 (3) ≈ |" in md
    assert r"91.2 $\pm$ 3.1 (3) $\approx$" in to_latex(table)
    csv = _csv(table)
    assert csv.loc["lsq", "tie"] and csv.loc["dorefa", "tie"] and not csv["best"].any()


def test_a_clear_winner_is_bold(tmp_path):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("lsq", 2): 92.0,
            ("dorefa", 0): 80.0, ("dorefa", 1): 81.5, ("dorefa", 2): 82.0}
    table, cells = _table(tmp_path, runs)
    assert cells["lsq"].best and not cells["lsq"].tie
    assert not (cells["dorefa"].best or cells["dorefa"].tie)
    assert "| W4/A4 | lsq | **91.0 ± 2.5 (3)** |" in to_markdown(table)
    assert r"\textbf{91.0 $\pm$ 2.5 (3)}" in to_latex(table)
    csv = _csv(table)
    assert csv.loc["lsq", "best"] and not csv.loc["dorefa", "best"]
    assert csv.loc["lsq", "ci_low"] == pytest.approx(91.0 - 2.4841, abs=1e-3)


def test_pairing_sees_what_overlapping_intervals_hide(tmp_path):
    """Seed effects shared through the FP parent: every seed gains ~1 point, the intervals overlap."""
    runs = {("lsq", 0): 80.0, ("lsq", 1): 85.0, ("lsq", 2): 90.0,
            ("dorefa", 0): 81.0, ("dorefa", 1): 86.2, ("dorefa", 2): 90.9}
    _, cells = _table(tmp_path, runs)
    assert cells["dorefa"].best and not cells["lsq"].tie


@pytest.mark.parametrize("dorefa, bold", [((70.0, 71.0, 72.0), True), ((88.0, 91.0, 94.0), False)])
def test_without_common_seeds_the_intervals_decide(tmp_path, dorefa, bold):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("lsq", 2): 92.0}
    runs.update({("dorefa", seed): value for seed, value in zip((3, 4, 5), dorefa)})
    _, cells = _table(tmp_path, runs)
    assert cells["lsq"].best is bold and cells["lsq"].tie is not bold


def test_a_single_run_has_no_error_bar_and_no_bold(tmp_path):
    runs = {("lsq", 0): 99.0, ("dorefa", 0): 80.0, ("dorefa", 1): 81.0, ("dorefa", 2): 82.0}
    table, cells = _table(tmp_path, runs)
    assert not any(c.best or c.tie for c in cells.values())
    md = to_markdown(table)
    assert "| W4/A4 | lsq | 99.0 (1) |" in md and "|  | dorefa | 81.0 ± 2.5 (3) |" in md
    csv = _csv(table)
    assert csv.loc["lsq", "n"] == 1 and pd.isna(csv.loc["lsq", "ci_low"]) and pd.isna(csv.loc["lsq", "sd"])


def test_mixed_layer_policies_are_marked_in_the_cells(tmp_path):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("dorefa", 0): 85.0, ("dorefa", 1): 86.0}
    table, cells = _table(tmp_path, runs, dorefa={"policy": ("fp", "fp")})
    assert cells["lsq"].setup_mark == "a" and cells["dorefa"].setup_mark == "b"
    md = to_markdown(table)
    assert "90.5 ± 6.4 (2)ᵃ" in md and "85.5 ± 6.4 (2)ᵇ" in md
    assert "a = 8bit/8bit → W8A8/W8A8, default hparams; b = fp/fp → fp/fp, default hparams" in md
    assert r"(2)\textsuperscript{b}" in to_latex(table)
    assert _csv(table).loc["dorefa", "setup_mark"] == "b"


def test_one_method_under_two_policies_gets_two_marked_rows(tmp_path):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("lsq@fp", 0): 92.0, ("lsq@fp", 1): 93.0}
    table, cells = _table(tmp_path, runs, **{"lsq@fp": {"policy": ("fp", "fp")}})
    assert sorted(cells) == ["lsq [8bit/8bit]", "lsq [fp/fp]"]
    assert {c.setup_mark for c in cells.values()} == {"a", "b"}


def test_tuned_and_default_runs_are_not_pooled(tmp_path):
    runs = {("lsq", 0): 90.0, ("lsq", 1): 91.0, ("lsq@tuned", 0): 92.0, ("lsq@tuned", 1): 93.0,
            ("dorefa", 0): 80.0, ("dorefa", 1): 81.0}
    table, cells = _table(tmp_path, runs, **{"lsq@tuned": {"tuned": True}})
    assert sorted(cells) == ["dorefa", "lsq [default]", "lsq [tuned]"]
    assert cells["lsq [tuned]"].n == 2 and cells["lsq [tuned]"].mean == 92.5
    assert cells["lsq [tuned]"].setup_mark != cells["lsq [default]"].setup_mark
    assert "8bit/8bit → W8A8/W8A8, tuned hparams" in table.caption


def test_a_cell_pooling_different_specs_is_starred(tmp_path):
    first = write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 0, 90.0)
    write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 1, 91.0)
    write_run(tmp_path / "runs", STD_TASK, "fp", 32, 0, 95.0)
    spec = json.loads((first / "spec.json").read_text())
    spec["spec"]["recipe"]["lr"] = 0.1  # same method, bits and policy, another recipe: pooled as a seed
    (first / "spec.json").write_text(json.dumps(spec))
    result = json.loads((first / "result.json").read_text())
    result["spec"] = spec["spec"]
    (first / "result.json").write_text(json.dumps(result))
    table = standard_table(collect_runs(tmp_path)[0])
    assert "90.5 ± 6.4 (2)*" in to_markdown(table) and "*: the cell pools runs" in table.caption
