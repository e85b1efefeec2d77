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


def _run(held: tuple[str, ...], rows: list[dict[str, float]], method: str = "fp", trial: int = 0,
         variant: str = "") -> DgRun:
    history = tuple({"epoch": i + 1, "test_acc_by_domain": accs} for i, accs in enumerate(rows))
    return DgRun(f"{method}-{'-'.join(held)}-{trial}{variant}", "toy", held, "mnist_cnn", method, 32, 32,
                 trial, history, variant)


def _accs(test_in: float, a_out: float, b_out: float, c_out: float, **extra: float) -> dict[str, float]:
    return {"c:in": test_in, "a:out": a_out, "b:out": b_out, "c:out": c_out, **extra}


def test_training_domain_validation_picks_best_mean_training_out_split():
    run = _run(("c",), [_accs(80, 90, 90, 99), _accs(85, 95, 93, 10), _accs(70, 94, 94, 50)])
    assert train_domain_validation(run) == (94, 85)  # epochs 2 and 3 both reach a mean of 94: the earlier
    tied = _run(("c",), [_accs(80, 94, 94, 0), _accs(85, 95, 93, 0)])
    assert train_domain_validation(tied) == (94, 80)  # equal means: the earliest evaluation
    assert oracle_last(run) == (50, 70)  # the last step, whatever the test out split says


def test_leave_one_domain_out_uses_the_pair_runs_in_split():
    single = _run(("c",), [_accs(80, 0, 0, 0), _accs(85, 0, 0, 0)])
    pair_a = _run(("c", "a"), [{"a:in": 90, "c:in": 0}, {"a:in": 70, "c:in": 0}])
    pair_b = _run(("b", "c"), [{"b:in": 90, "c:in": 0}, {"b:in": 80, "c:in": 0}])
    assert leave_one_domain_out(single, [single, pair_a, pair_b]) == (90, 80)  # epoch 1: mean 90 > 75
    assert math.isnan(leave_one_domain_out(single, [single, pair_a])[1])  # a pair run is missing


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


def test_hyperparameter_settings_selected_per_trial_as_domainbed_sweep_acc():
    """Two settings of one trial: each rule scores both and reports the test accuracy of the setting with
    the best validation accuracy (the rule's own), not a mean over settings."""
    calm = _run(("c",), [_accs(80, 90, 90, 60), _accs(82, 91, 91, 70)], variant="lr=1e-3")
    wild = _run(("c",), [_accs(95, 95, 95, 40), _accs(60, 50, 50, 90)], variant="lr=1e-2")
    by_rule = {rule: selected_scores([calm, wild], rule) for rule in ("train-val", "oracle-last")}
    assert by_rule["train-val"][["acc", "variants"]].values.tolist() == [[95.0, 2]]  # wild's epoch 1
    assert by_rule["oracle-last"][["acc", "variants"]].values.tolist() == [[60.0, 2]]  # wild's c:out 90
    pairs = [_run(("c", "a"), [{"a:in": 90, "c:in": 0}, {"a:in": 90, "c:in": 0}], variant=v)
             for v in ("lr=1e-3", "lr=1e-2")] + \
        [_run(("b", "c"), [{"b:in": b1, "c:in": 0}, {"b:in": b2, "c:in": 0}], variant=v)
         for v, b1, b2 in (("lr=1e-3", 70, 80), ("lr=1e-2", 60, 60))]
    lodo = selected_scores([calm, wild, *pairs], "lodo")  # pairs are matched within a setting
    assert lodo[["acc", "variants"]].values.tolist() == [[82.0, 2]]  # calm, epoch 2: (90 + 80) / 2 = 85


def test_ensemble_members_are_not_trials_of_their_method(tmp_path):
    from analysis.domainbed import load_dg_runs
    from benchmarks.run.rundir import RunDir

    def write(run_id: str, method: str, seed: int, trial: int | None, acc: float) -> None:
        directory = RunDir.of(tmp_path, run_id)
        task = {"dataset": "toy", "target": "c", "trial": trial}
        spec = {"task": task, "arch": "mnist_cnn", "method": method, "w_bits": 7, "a_bits": 32,
                "seed": seed, "recipe": {"lr": 0.001}, "hparams": {}}
        directory.write_spec({"run_id": run_id, "spec": spec})
        directory.write_metrics([{"epoch": 1, "test_acc_by_domain": _accs(acc, 1, 1, 1)}])
        directory.mark_done()

    write("main", "qtdog", 0, None, 80.0)
    write("member1", "qtdog", 1000, 0, 99.0)
    write("ensemble", "eoq", 0, 0, 90.0)
    runs = load_dg_runs(tmp_path)
    assert sorted(r.run_id for r in runs) == ["ensemble", "main"]
    scores = selected_scores(runs, "train-val")
    assert scores[scores["method"] == "qtdog"]["acc"].tolist() == [80.0]
