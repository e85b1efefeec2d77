"""Model selection at analysis time: which epoch of a run a table reports, decided from its per-epoch records.

A rule reads a run's ``metrics.jsonl`` history (one row per finished epoch: ``epoch``, ``val_acc``,
``test_acc``, ``test_acc_by_domain``, ...) and picks one epoch; the run's score under the rule is that epoch's
``test_acc`` (the primary test domain). Each rule has a name and a printed description that captions repeat,
so a number always says how its epoch was chosen (DomainBed's ``SelectionMethod``; its users could not tell
which checkpoint a table used). Rules are registered in :data:`RULES`; a new rule is one subclass and one
:func:`register` call here, and collection, tables, CLI choices and captions pick it up.

Ties (two epochs with the same best accuracy) go to the **earliest** epoch: the fewest training steps, and the
same choice as the trainer's own ``top1_best`` / ``top1_val_selected`` (Python's ``max`` keeps the first), so
the result.json fallback below gives the same numbers.

Fallback: a done run without a readable history (e.g. collected from MLflow without its ``metrics.jsonl``
artifact) takes the value the trainer recorded in ``result.json`` under the rule's ``fallback_metric``, where
the rule has one; the ``selection_source`` column says which runs did, and captions count them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HISTORY, RESULT = "metrics.jsonl", "result.json"


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


@dataclass(frozen=True)
class SelectionRule:
    """Picks one epoch row of a run's history; ``None`` when the history cannot answer (e.g. no val split)."""

    name: str
    description: str
    fallback_metric: str | None = None  # result.json metric the trainer computed the same way, if any
    fallback_epoch: str | None = None  # result.json key holding that metric's epoch, if any

    def pick(self, history: list[dict[str, Any]]) -> dict[str, Any] | None:
        raise NotImplementedError

    def caption(self) -> str:
        """How a caption names the rule: ``epoch with the best validation accuracy (rule `val`)``."""
        return f"{self.description} (rule `{self.name}`)"


def _best(history: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The earliest row with the highest ``key`` among rows that have a test accuracy and ``key``."""
    rows = [r for r in history if _number(r.get(key)) is not None and _number(r.get("test_acc")) is not None]
    if not rows:
        return None
    top = max(_number(r[key]) for r in rows)
    return next(r for r in rows if _number(r[key]) == top)


class LastEpoch(SelectionRule):
    def pick(self, history: list[dict[str, Any]]) -> dict[str, Any] | None:
        rows = [r for r in history if _number(r.get("test_acc")) is not None]
        return rows[-1] if rows else None


class BestValidation(SelectionRule):
    def pick(self, history: list[dict[str, Any]]) -> dict[str, Any] | None:
        return _best(history, "val_acc")


class OracleTest(SelectionRule):
    def pick(self, history: list[dict[str, Any]]) -> dict[str, Any] | None:
        return _best(history, "test_acc")


RULES: dict[str, SelectionRule] = {}


def register(rule: SelectionRule) -> SelectionRule:
    if rule.name in RULES:
        raise ValueError(f"selection rule {rule.name!r} is registered twice")
    RULES[rule.name] = rule
    return rule


register(LastEpoch("last", "last epoch", "top1_last"))
register(BestValidation("val", "epoch with the best validation accuracy (training-domain validation split; "
                               "ties: earliest)", "top1_val_selected"))
register(OracleTest("oracle", "epoch with the best test accuracy (oracle: the AlignQ/ClimbQ papers' "
                              "convention; ties: earliest)", "top1_best", "best_epoch"))

DEFAULT_RULE = "last"


def get_rule(name: str) -> SelectionRule:
    """The rule called ``name``; the result.json metric names of earlier versions (``top1_best``, ...) are
    accepted for the rule that reproduces them."""
    if name in RULES:
        return RULES[name]
    for rule in RULES.values():
        if rule.fallback_metric == name:
            return rule
    raise KeyError(f"unknown selection rule {name!r}; known: {', '.join(RULES)}")


def value_column(name: str) -> str:
    """The runs-table column holding a run's score under rule ``name``: ``top1@last``."""
    return f"top1@{get_rule(name).name}"


def epoch_column(name: str) -> str:
    return f"epoch@{get_rule(name).name}"


def clean_history(rows: list[Any]) -> list[dict[str, Any]]:
    """Epoch rows in epoch order, one per epoch (the last one written wins: a resumed run rewrites its
    history), rows without an integer epoch dropped."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and not isinstance(row["epoch"], bool):
            by_epoch[row["epoch"]] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def selection_columns(history: list[dict[str, Any]] | None, result_metrics: Any = None) -> dict[str, Any]:
    """Every rule's score and epoch for one done run, and where they came from.

    ``history``: the run's metrics.jsonl rows (None or empty: not available); ``result_metrics``: its
    result.json metrics (an object with attributes, e.g. ``ResultRecord.metrics``) for the fallback.
    """
    history = clean_history(history or [])
    source = HISTORY if history else (RESULT if result_metrics is not None else "")
    row: dict[str, Any] = {"selection_source": source}
    for rule in RULES.values():
        value, epoch = math.nan, math.nan
        if history:
            picked = rule.pick(history)
            if picked is not None:
                value, epoch = float(_number(picked["test_acc"])), float(picked["epoch"])
        elif result_metrics is not None and rule.fallback_metric:
            value = _number(getattr(result_metrics, rule.fallback_metric, None))
            value = math.nan if value is None else value
            recorded = _number(getattr(result_metrics, rule.fallback_epoch, None)) \
                if rule.fallback_epoch else None
            epoch = math.nan if recorded is None else recorded
        row[value_column(rule.name)], row[epoch_column(rule.name)] = value, epoch
    return row


def empty_selection_columns() -> dict[str, Any]:
    """The columns of a run that is not done: no score under any rule."""
    return selection_columns(None, None)
