"""DomainBed's three model-selection rules and its results table, for the domain-generalization track.

A DG run (``benchmarks/data/domaingen.py``) records per evaluation ("epoch" of N steps) the accuracy of every
domain's ``out`` split (``<d>:out``) and of each held-out domain's ``in`` split (``<t>:in``) in
``test_acc_by_domain``. The rules (Gulrajani & Lopez-Paz 2021, ``domainbed/model_selection.py``), each picking
one evaluation of a run whose reported number is the test domain's ``in`` accuracy there:

* ``train-val`` (training-domain validation): the evaluation with the best mean ``out`` accuracy over the
  training domains;
* ``oracle-last`` (test-domain validation): DomainBed's oracle chooses *hyper-parameters* by the test domain's
  ``out`` accuracy but always at the last step; with one hyper-parameter setting per run it is the last step;
* ``lodo`` (leave-one-domain-out validation): needs, for test domain t, the runs holding out {t, v} for every
  other domain v; the evaluation maximising the mean over v of the (t, v) run's accuracy on v's ``in`` split.

With DomainBed's random hyper-parameter search (grid key ``hparam_draws``), a trial has several runs of one
cell and test domain, one per setting (a *variant*: the run's recipe and hyper-parameters). Each rule then
scores every variant as above, giving a validation and a test accuracy, and the trial reports the test
accuracy of the variant with the best validation accuracy, as DomainBed's ``SelectionMethod.sweep_acc``; the
oracle's validation accuracy is the test domain's ``out`` accuracy at the last step. The extra members of an
ensemble (runs whose task pins a trial other than their seed) are not trials of their method: they count only
inside the ensemble's row.

Ties go to the earliest evaluation (and the first variant). The table (``domainbed_table``) has a row per
method and W/A, a column per test domain plus the average; a cell is the mean ± standard error over trials
(population std / √n, DomainBed's ``format_mean``), the Avg column the mean of the per-domain means (no error
bar), as DomainBed prints them. Ensembles (EoQ) are printed without error bars, as their paper does. Published
rows come from ``analysis/published/domainbed.csv``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from benchmarks.run.labels import bits_label, method_display, method_sort_key
from benchmarks.run.rundir import run_dirs

DG_RULES = {
    "train-val": "training-domain validation (best mean out-split accuracy of the training domains)",
    "oracle-last": "test-domain validation (oracle), last step",
    "lodo": "leave-one-domain-out validation (runs with two held-out domains)",
}
ENSEMBLE_METHODS = ("eoq",)


@dataclass(frozen=True)
class DgRun:
    """One finished DG run: what it is and its evaluation history (``epoch``, ``test_acc_by_domain``)."""

    run_id: str
    suite: str
    held_out: tuple[str, ...]
    arch: str
    method: str
    w_bits: int
    a_bits: int
    trial: int
    history: tuple[dict[str, Any], ...]
    variant: str = ""  # the hyper-parameter setting: recipe and method hyper-parameters

    @property
    def cell(self) -> tuple[str, str, str, int, int, int, str]:
        """What two runs must share to be parts of one experiment (held-out domains aside): a LODO run and
        its pair runs share the setting too."""
        return self.suite, self.arch, self.method, self.w_bits, self.a_bits, self.trial, self.variant


def is_dg_history(history: list[dict[str, Any]]) -> bool:
    accs = history[-1].get("test_acc_by_domain") if history else None
    return isinstance(accs, dict) and any(str(k).endswith(":in") for k in accs)


def load_dg_runs(output: str | Path) -> list[DgRun]:
    """Every done run under ``output`` whose history is a DG history."""
    runs = []
    for directory in run_dirs(output):
        if not directory.is_done():
            continue
        record, history = directory.read_spec() or {}, directory.read_metrics()
        spec = record.get("spec", {})
        if not spec or not is_dg_history(history):
            continue
        task = spec["task"]
        held = tuple(t.strip() for t in str(task["target"]).split(","))
        trial = task.get("trial")
        if trial is not None and spec["method"] not in ENSEMBLE_METHODS and int(spec["seed"]) != int(trial):
            continue  # an ensemble's extra member: part of the ensemble's row, not a trial of its method
        variant = json.dumps([spec.get("recipe"), spec.get("hparams")], sort_keys=True)
        runs.append(DgRun(record["run_id"], task["dataset"], held, spec["arch"], spec["method"],
                          int(spec["w_bits"]), int(spec["a_bits"]),
                          int(spec["seed"] if trial is None else trial),
                          tuple(sorted(history, key=lambda r: r["epoch"])), variant))
    return runs


def _acc(row: dict[str, Any], key: str) -> float:
    value = row.get("test_acc_by_domain", {}).get(key)
    return math.nan if value is None else float(value)


def _argmax(rows: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]) -> dict[str, Any] | None:
    scored = [(score(r), r) for r in rows]
    scored = [(s, r) for s, r in scored if not math.isnan(s)]
    if not scored:
        return None
    best = max(s for s, _ in scored)
    return next(r for s, r in scored if s == best)  # the earliest of equals


Choice = tuple[float, float]  # (validation accuracy, test accuracy) of the evaluation a rule picks
NO_CHOICE: Choice = (math.nan, math.nan)


def train_domain_validation(run: DgRun) -> Choice:
    test = run.held_out[0]
    train = [k[:-4] for k in run.history[-1]["test_acc_by_domain"]
             if k.endswith(":out") and k[:-4] not in run.held_out]

    def validation(row: dict[str, Any]) -> float:
        return float(np.mean([_acc(row, f"{d}:out") for d in train]))

    row = _argmax(list(run.history), validation)
    return NO_CHOICE if row is None else (validation(row), _acc(row, f"{test}:in"))


def oracle_last(run: DgRun) -> Choice:
    last, test = run.history[-1], run.held_out[0]
    return _acc(last, f"{test}:out"), _acc(last, f"{test}:in")


def leave_one_domain_out(run: DgRun, siblings: list[DgRun]) -> Choice:
    """``run`` holds out one domain t; ``siblings`` are runs of the same cell. NaN when a pair run is
    missing."""
    test = run.held_out[0]
    others = {d[:-4] for d in run.history[-1]["test_acc_by_domain"] if d.endswith(":out")} - {test}
    pairs = {}
    for s in siblings:
        if len(s.held_out) == 2 and test in s.held_out:
            pairs[next(d for d in s.held_out if d != test)] = {r["epoch"]: r for r in s.history}
    if set(pairs) != others:
        return NO_CHOICE

    def validation(row: dict[str, Any]) -> float:
        found = [pairs[v].get(row["epoch"]) for v in sorted(others)]
        return math.nan if any(f is None for f in found) else float(
            np.mean([_acc(f, f"{v}:in") for f, v in zip(found, sorted(others))]))

    row = _argmax(list(run.history), validation)
    return NO_CHOICE if row is None else (validation(row), _acc(row, f"{test}:in"))


def selected_scores(runs: list[DgRun], rule: str) -> pd.DataFrame:
    """One row per (cell, trial, test domain): the test accuracy ``rule`` selects, across the trial's
    hyper-parameter settings when it has several (``variants``: how many were scored)."""
    if rule not in DG_RULES:
        raise ValueError(f"unknown DomainBed selection rule {rule!r}; valid: {', '.join(DG_RULES)}")
    by_cell: dict[tuple, list[DgRun]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r)
    choices: dict[tuple, list[Choice]] = {}
    for r in runs:
        if len(r.held_out) != 1:
            continue
        if rule == "train-val":
            choice = train_domain_validation(r)
        else:
            choice = oracle_last(r) if rule == "oracle-last" else leave_one_domain_out(r, by_cell[r.cell])
        key = (r.suite, r.arch, r.method, r.w_bits, r.a_bits, r.trial, r.held_out[0])
        choices.setdefault(key, []).append(choice)
    rows = []
    for key, scored in choices.items():
        valid = [c for c in scored if not math.isnan(c[0])]
        best = max(valid, key=lambda c: c[0]) if valid else NO_CHOICE  # the first of equal validations
        rows.append(dict(zip(SCORE_KEYS, key), acc=best[1], variants=len(scored)))
    return pd.DataFrame(rows, columns=[*SCORE_KEYS, "acc", "variants"])


SCORE_KEYS = ("suite", "arch", "method", "w_bits", "a_bits", "trial", "test")


def mean_and_error(values: np.ndarray) -> tuple[float, float, int]:
    """DomainBed's ``format_mean``: mean and population std / √n over trials."""
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std() / math.sqrt(len(values))), len(values)


def _cell(mean: float, error: float, n: int, ensemble: bool) -> str:
    if n == 0:
        return "—"
    return f"{mean:.1f}" if ensemble or n == 1 else f"{mean:.1f} ± {error:.1f}"


def domainbed_table(scores: pd.DataFrame, suite: str, domains: list[str],
                    published: pd.DataFrame | None = None,
                    rule: str = "train-val") -> tuple[pd.DataFrame, str]:
    """Rows per (method, W/A) of ``suite`` (ours, then published ones), columns ``domains`` + Avg."""
    ours = scores[scores["suite"] == suite]
    lines = []
    for (method, w, a), group in sorted(ours.groupby(["method", "w_bits", "a_bits"]),
                                        key=lambda kv: (method_sort_key(kv[0][0]), kv[0][1], kv[0][2])):
        line: dict[str, Any] = {"method": method_display(method), "W/A": bits_label(w, a, method),
                                "source": "ours"}
        means = []
        for d in domains:
            m, e, n = mean_and_error(group[group["test"] == d]["acc"].to_numpy(dtype=float))
            line[d] = _cell(m, e, n, method in ENSEMBLE_METHODS)
            means.append(m)
        line["Avg"] = f"{np.mean(means):.1f}" if not any(math.isnan(m) for m in means) else "—"
        line["trials"] = int(group["trial"].nunique())
        lines.append(line)
    for line in _published_lines(published, suite, domains, rule):
        lines.append(line)
    caption = (f"{suite}: test-domain accuracy (%) of the held-out domain's in split, model selection by "
               f"{DG_RULES[rule]} (rule `{rule}`); mean ± standard error over trials (population std / √n), "
               "Avg = mean of the per-domain means; ensembles without error bars.")
    settings = int(ours["variants"].max()) if "variants" in ours and len(ours) else 1
    if settings > 1:
        caption += (" Each trial reports the hyper-parameter setting the rule selects among up to "
                    f"{settings} (DomainBed's random search).")
    return pd.DataFrame(lines, columns=["method", "W/A", *domains, "Avg", "trials", "source"]), caption


def _published_lines(published: pd.DataFrame | None, suite: str, domains: list[str],
                     rule: str) -> list[dict[str, Any]]:
    if published is None or published.empty:
        return []
    rows = published[(published["dataset"] == suite) & (published["metric"] == f"top1@{rule}")]
    lines = []
    for (method, source), group in rows.groupby(["method", "source"], sort=False):
        line: dict[str, Any] = {"method": method, "W/A": bits_label(group["w_bits"].iloc[0],
                                                                     group["a_bits"].iloc[0],
                                                                     group["method_key"].iloc[0]),
                                "source": f"published: {source}", "trials": ""}
        for d in [*domains, "Avg"]:
            hit = group[group["target"] == d]
            line[d] = _published_cell(hit.iloc[0]) if len(hit) else "—"
        lines.append(line)
    return lines


def _published_cell(row: pd.Series) -> str:
    """The published value with its standard error, which the CSV keeps in ``note`` as ``SE=<x>; ...``."""
    note = str(row["note"])
    if note.startswith("SE="):
        return f"{row['value_text']} ± {note[3:].split(';')[0]}"
    return str(row["value_text"])


def render_markdown(table: pd.DataFrame, caption: str) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body, "", caption])


def suite_domains(runs: list[DgRun], suite: str) -> list[str]:
    """A suite's domains in its environment order (the order of the ``:out`` keys its runs record)."""
    for r in runs:
        if r.suite == suite:
            return [k[:-4] for k in r.history[-1]["test_acc_by_domain"] if k.endswith(":out")]
    return []


def report(output: str | Path, rules: tuple[str, ...] = tuple(DG_RULES)) -> str:
    """Markdown: one table per suite found under ``output`` and rule, published numbers beside ours."""
    from analysis.published import load_published

    runs, published = load_dg_runs(output), load_published()
    parts = []
    for suite in sorted({r.suite for r in runs}):
        for rule in rules:
            table, caption = domainbed_table(selected_scores(runs, rule), suite, suite_domains(runs, suite),
                                             published, rule)
            parts.append(f"### {suite}, {rule}\n\n{render_markdown(table, caption)}\n")
    return "\n".join(parts) if parts else f"no finished domain-generalization run under {output}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="DomainBed-style tables of the domain-generalization runs "
                                                 "under OUTPUT (e.g. outputs/domaingen).")
    parser.add_argument("output", help="a grid's output directory (holding runs/)")
    parser.add_argument("--rule", action="append", default=None,
                        help=f"selection rule, repeatable: {', '.join(DG_RULES)} (default: all three)")
    args = parser.parse_args(argv)
    rules = tuple(args.rule or DG_RULES)
    bad = [r for r in rules if r not in DG_RULES]
    if bad:
        print(f"error: unknown selection rule {bad[0]!r}; valid: {', '.join(DG_RULES)}", file=sys.stderr)
        return 2
    print(report(args.output, rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
