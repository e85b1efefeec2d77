"""DomainBed's selection rules and table (analysis/domainbed.py) on hand-made histories."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.domainbed import (
    DgRun,
    domainbed_table,
    leave_one_domain_out,
    oracle_last,
    render_markdown,
    selected_scores,
    train_domain_validation,
)
from analysis.published import load_published

DOMAINS = ["a", "b", "c"]


def _run(held: tuple[str, ...], rows: list[dict[str, float]], method: str = "fp", trial: int = 0) -> DgRun:
    history = tuple({"epoch": i + 1, "test_acc_by_domain": accs} for i, accs in enumerate(rows))
    return DgRun(f"{method}-{'-'.join(held)}-{trial}", "toy", held, "mnist_cnn", method, 32, 32, trial,
                 history)


def _accs(test_in: float, a_out: float, b_out: float, c_out: float, **extra: float) -> dict[str, float]:
    return {"c:in": test_in, "a:out": a_out, "b:out": b_out, "c:out": c_out, **extra}


def test_training_domain_validation_picks_best_mean_training_out_split():
    run = _run(("c",), [_accs(80, 90, 90, 99), _accs(85, 95, 93, 10), _accs(70, 94, 94, 50)])
    assert train_domain_validation(run) == 85  # epochs 2 and 3 both reach a mean of 94: the earlier
    tied = _run(("c",), [_accs(80, 94, 94, 0), _accs(85, 95, 93, 0)])
    assert train_domain_validation(tied) == 80  # equal means: the earliest evaluation
    assert oracle_last(run) == 70  # the last step, whatever the test out split says


def test_leave_one_domain_out_uses_the_pair_runs_in_split():
    single = _run(("c",), [_accs(80, 0, 0, 0), _accs(85, 0, 0, 0)])
    pair_a = _run(("c", "a"), [{"a:in": 90, "c:in": 0}, {"a:in": 70, "c:in": 0}])
    pair_b = _run(("b", "c"), [{"b:in": 90, "c:in": 0}, {"b:in": 80, "c:in": 0}])
    assert leave_one_domain_out(single, [single, pair_a, pair_b]) == 80  # epoch 1: mean 90 > 75
    assert math.isnan(leave_one_domain_out(single, [single, pair_a]))  # a pair run is missing


def test_table_mean_and_standard_error_over_trials_with_published_rows():
    runs = []
    for trial, (acc_c, acc_b) in enumerate([(80.0, 90.0), (84.0, 92.0), (85.0, 94.0)]):
        runs.append(_run(("c",), [_accs(acc_c, 50, 50, 50)], trial=trial))
        runs.append(_run(("b",), [{"b:in": acc_b, "a:out": 1, "b:out": 1, "c:out": 1}], trial=trial))
    runs.append(_run(("c",), [_accs(88.0, 50, 50, 50)], method="eoq"))
    scores = selected_scores(runs, "train-val")
    table, caption = domainbed_table(scores, "toy", DOMAINS)
    fp = table[table["method"] == "FP"].iloc[0]
    values = np.array([80.0, 84.0, 85.0])
    assert fp["c"] == f"{values.mean():.1f} ± {values.std() / math.sqrt(3):.1f}" == "83.0 ± 1.2"
    assert fp["a"] == "—" and fp["Avg"] == "—" and fp["trials"] == 3
    assert table[table["method"] == "EoQ"].iloc[0]["c"] == "88.0"  # ensembles: no error bar
    assert "training-domain validation" in caption and "standard error" in caption
    assert "| method | W/A | a | b | c | Avg |" in render_markdown(table, caption)


def test_published_domainbed_rows_reach_the_table():
    published = load_published()
    table, _ = domainbed_table(selected_scores([], "train-val"), "rotated-mnist",
                               ["0", "15", "30", "45", "60", "75"], published)
    erm = table[table["source"].str.startswith("published")].iloc[0]
    assert (erm["method"], erm["0"], erm["30"], erm["Avg"]) == ("ERM", "95.9 ± 0.1", "98.8 ± 0.0", "98.0")


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: train-val, oracle-last, lodo"):
        selected_scores([], "best")
