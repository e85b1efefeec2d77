"""Model-selection rules on hand-made metrics.jsonl histories, and how collection uses them."""
from __future__ import annotations

import json
import math

import pytest

from analysis import selection
from analysis.collect import collect_runs
from analysis.selection import (
    RULES,
    OracleTest,
    clean_history,
    epoch_column,
    get_rule,
    register,
    selection_columns,
    value_column,
)
from analysis.tables import standard_table
from benchmarks.run.result import Metrics
from tests.analysis.fixtures import STD_TASK, write_run


def _row(epoch, test, val):
    return {"epoch": epoch, "test_acc": test, "val_acc": val, "test_acc_by_domain": {"d": test}}


# epoch: test, val. Best test 90 at epochs 3 and 5 (tie: earliest = 3); best val 80 at epochs 2 and 4
# (tie: earliest = 2, where test is 85); epoch 6 has no validation accuracy; last = epoch 6 (test 88).
HISTORY = [_row(1, 70.0, 60.0), _row(2, 85.0, 80.0), _row(3, 90.0, 75.0), _row(4, 86.0, 80.0),
           _row(5, 90.0, 79.0), _row(6, 88.0, None)]


def test_each_rule_picks_its_epoch():
    assert get_rule("last").pick(HISTORY)["epoch"] == 6
    assert get_rule("oracle").pick(HISTORY)["epoch"] == 3  # tie 3/5: the earliest
    assert get_rule("val").pick(HISTORY)["epoch"] == 2  # tie 2/4: the earliest
    cols = selection_columns(HISTORY)
    assert cols["selection_source"] == "metrics.jsonl"
    assert (cols["top1@last"], cols["epoch@last"]) == (88.0, 6.0)
    assert (cols["top1@oracle"], cols["epoch@oracle"]) == (90.0, 3.0)
    assert (cols["top1@val"], cols["epoch@val"]) == (85.0, 2.0)


def test_history_is_cleaned_before_selection():
    """Out-of-order rows, a rewritten epoch (the later row wins), rows without an epoch."""
    messy = [HISTORY[2], {"note": "no epoch"}, HISTORY[0], _row(2, 10.0, 99.0), HISTORY[1], {"epoch": "x"}]
    assert [r["epoch"] for r in clean_history(messy)] == [1, 2, 3]
    assert clean_history(messy)[1]["test_acc"] == 85.0


def test_no_validation_split_gives_no_val_score():
    history = [_row(1, 70.0, None), _row(2, 75.0, None)]
    cols = selection_columns(history)
    assert math.isnan(cols["top1@val"]) and math.isnan(cols["epoch@val"])
    assert cols["top1@last"] == 75.0 and cols["top1@oracle"] == 75.0


def test_result_json_fallback_without_history():
    metrics = Metrics(top1_last=80.0, top1_best=82.0, best_epoch=4, top1_val_selected=81.0)
    cols = selection_columns(None, metrics)
    assert cols["selection_source"] == "result.json"
    picked = (cols["top1@last"], cols["top1@oracle"], cols["epoch@oracle"], cols["top1@val"])
    assert picked == (80.0, 82.0, 4.0, 81.0)
    assert math.isnan(cols["epoch@last"])  # result.json does not record which epoch was last
    assert selection_columns(None, None)["selection_source"] == ""


def test_names_and_registry():
    assert list(RULES) == ["last", "val", "oracle"]
    assert get_rule("top1_best") is RULES["oracle"]  # the result.json names of earlier versions
    assert get_rule("top1_val_selected") is RULES["val"] and get_rule("top1_last") is RULES["last"]
    assert value_column("oracle") == "top1@oracle" and epoch_column("top1_last") == "epoch@last"
    assert "oracle" in RULES["oracle"].caption() and "(rule `oracle`)" in RULES["oracle"].caption()
    with pytest.raises(KeyError, match="unknown selection rule"):
        get_rule("best")
    with pytest.raises(ValueError, match="registered twice"):
        register(OracleTest("oracle", "again"))


def test_a_new_rule_touches_analysis_only(monkeypatch):
    """One registration: collection computes it for every run and tables name it."""
    class SecondToLast(selection.SelectionRule):
        def pick(self, history):
            return history[-2] if len(history) > 1 else None

    monkeypatch.setitem(RULES, "penultimate", SecondToLast("penultimate", "the epoch before the last"))
    assert selection_columns(HISTORY)["top1@penultimate"] == 90.0


def test_collection_reads_the_history(tmp_path):
    """Done runs get every rule's score from metrics.jsonl; a run without one falls back to result.json and
    the caption says so."""
    kept = write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 0, 90.0)
    gone = write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 1, 80.0)
    write_run(tmp_path / "runs", STD_TASK, "fp", 32, 0, 95.0)
    history = [_row(1, 91.0, 50.0), _row(2, 93.0, 40.0), _row(3, 90.0, 45.0)]
    (kept / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in history) + "\n{torn")
    (gone / "metrics.jsonl").unlink()
    runs, _ = collect_runs(tmp_path)
    one = runs.set_index("seed").loc[[0, 1]].query("method == 'lsq'")
    assert (one.loc[0, "top1@oracle"], one.loc[0, "top1@val"], one.loc[0, "epoch@val"]) == (93.0, 91.0, 1)
    assert one.loc[0, "selection_source"] == "metrics.jsonl"
    # result.json of the fixture: top1_best = top1 + 1, top1_val_selected = top1 - 0.5
    assert (one.loc[1, "top1@oracle"], one.loc[1, "top1@val"]) == (81.0, 79.5)
    assert one.loc[1, "selection_source"] == "result.json"
    caption = standard_table(runs, "oracle").caption
    assert "1 run(s) had no metrics.jsonl" in caption and "(top1_best)" in caption
    assert "oracle" in caption


def test_unfinished_runs_have_no_score(tmp_path):
    write_run(tmp_path / "runs", STD_TASK, "lsq", 4, 0, "incomplete")
    runs, _ = collect_runs(tmp_path)
    assert math.isnan(runs["top1@last"].iloc[0]) and runs["selection_source"].iloc[0] == ""
