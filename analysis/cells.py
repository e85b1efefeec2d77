"""The table model: rows, columns and cells, and how cells are computed from the runs table.

A :class:`Table` is plain data; ``analysis.tables`` defines the paper layouts with it and
``analysis.render`` turns it into Markdown, LaTeX and CSV. Rows are grouped in W/A blocks with the FP
reference block first (AlignQ Tables 4-5 layout). A cell is the mean over the seeds of *done* runs with its
95 % t-interval and n (``analysis.stats``); it keeps its per-seed values and FP parents so that
``analysis.marks`` can compare cells pairwise (bold only beyond noise, ties, setup letters). Every ordering
below is explicit so the rendered text is byte-stable for golden-file tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.marks import mark_best, mark_setups
from analysis.schema import DONE, protocol_sort_key
from analysis.selection import get_rule, value_column
from analysis.stats import Summary, summarize
from benchmarks.run.labels import bits_sort_key, method_sort_key

STAT_NOTE = ("Cells: mean ± half-width of the 95 % t-interval of the mean over seeds "
             "(Student t quantile with n-1 df × SD / sqrt(n), SD with ddof 1), then (n) finished runs; "
             "n = 1 shows no ±; the CSV has SD, SE and the interval bounds.")
BOLD_NOTE = ("Bold: the highest mean of a W/A block in a column, only when it beats every other quantized "
             "cell there beyond noise (the 95 % t-interval of the paired per-seed difference, same seeds and "
             "FP parents, excludes 0; with fewer than 2 paired seeds, non-overlapping 95 % intervals). "
             "≈: the highest mean and the cells it does not beat so (a statistical tie). "
             "n = 1 cells are never bold or ≈.")


@dataclass
class Cell:
    mean: float = math.nan
    n: int = 0
    summary: Summary = field(default_factory=Summary)
    values: dict[int, float] = field(default_factory=dict)  # seed -> value (mean of runs sharing a seed)
    parents: dict[int, str] = field(default_factory=dict)  # seed -> FP parent run id(s): what pairs seeds
    setup: str = ""  # layer policy (requested -> ran at) and hparams source of its runs
    mixed: bool = False  # its runs differ in spec beyond the seed (hparams, recipe): pooled, marked *
    best: bool = False
    tie: bool = False
    setup_mark: str = ""

    @property
    def std(self) -> float:
        return self.summary.sd


@dataclass
class Column:
    """A table column: ``metric`` of the runs matching ``match``; or a per-seed mean/min over ``parts``;
    or (``delta_of``) the difference of another column to the FP reference row."""

    key: str
    label: str
    group: str = ""
    metric: str = ""
    match: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)
    reduce: str = "mean"
    delta_of: str = ""
    fp_ref: bool = False  # sweep tables: the value of the row's FP starting point, not of the row itself


@dataclass
class Row:
    key: str
    label: str
    block: str
    match: dict[str, Any]
    is_fp: bool = False


@dataclass
class Table:
    name: str
    title: str
    caption: str
    rows: list[Row]
    columns: list[Column]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    setup_legend: dict[str, str] = field(default_factory=dict)  # letter -> setup, for cells marked so

    def cell(self, row_key: str, col_key: str) -> Cell:
        return self.cells.get((row_key, col_key), Cell())


# ------------------------------------------------------------------------------------------ building

def done_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs only: the one place tables filter on status."""
    return runs[runs["status"] == DONE]


def _select(runs: pd.DataFrame, match: dict[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=runs.index)
    for col, value in match.items():
        mask &= runs[col] == value
    return runs[mask]


def _scored(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    values = pd.to_numeric(runs[metric], errors="coerce")
    return runs.assign(_value=values)[values.notna()]


def _parent(value: Any) -> str:
    return str(value) if isinstance(value, str) and value else ""


def _ran_at(run: pd.Series) -> str | None:
    """What the first/last layers ran at, with the run's own W/A written ``same``: ``same/fp`` reads the same
    at W2/A2 and W4/A4, so only real policy differences show."""
    effective = run["effective_policy"]
    if not isinstance(effective, str):
        return None
    body = f"W{run['w_bits']}A{run['a_bits']}"
    return "/".join("same" if part == body else part for part in effective.split("/"))


def setup_of(runs: pd.DataFrame) -> str:
    """``8bit/8bit → W8A8/W8A8, default hparams``: the requested layer policy, what the first/last layers ran
    at (layer reports), and whether hyper-parameters were tuned."""
    policy = ", ".join(sorted(set(runs["policy"].astype(str))))
    ran = ", ".join(sorted({r for r in (_ran_at(run) for _, run in runs.iterrows()) if r}))
    sources = set(runs["hparams_source"].astype(str)) if "hparams_source" in runs else {"default"}
    source = ", ".join(sorted(sources))
    return f"{policy}{f' → {ran}' if ran else ''}, {source} hparams"


def make_cell(runs: pd.DataFrame, col: Column) -> Cell:
    """The cell of ``col`` over ``runs`` (already restricted to one row)."""
    if not col.parts:
        scored = _scored(_select(runs, col.match), col.metric)
        if scored.empty:
            return Cell()
        per_seed = scored.groupby("seed")
        values = per_seed["_value"].mean().to_dict()
        parents = per_seed["init_from"].agg(lambda p: ",".join(sorted({_parent(x) for x in p}))).to_dict()
        summary = summarize(scored["_value"].to_numpy())
        return Cell(mean=summary.mean, n=summary.n, summary=summary, values=values, parents=parents,
                    setup=setup_of(scored), mixed=scored["config_id"].nunique() > 1)
    # Avg/Worst over tasks: only seeds that finished every task, so the mean compares like with like.
    parts = [_scored(_select(runs, p), col.metric) for p in col.parts]
    if not parts or any(p.empty for p in parts):
        return Cell()
    frame = pd.concat([p.groupby("seed")["_value"].mean() for p in parts], axis=1, join="inner")
    if frame.empty:
        return Cell()
    series = frame.min(axis=1) if col.reduce == "min" else frame.mean(axis=1)
    parents = {seed: "|".join(",".join(sorted({_parent(x) for x in p.loc[p["seed"] == seed, "init_from"]}))
                              for p in parts) for seed in series.index}
    summary = summarize(series.to_numpy())
    used = pd.concat(parts)
    return Cell(mean=summary.mean, n=summary.n, summary=summary, values=series.to_dict(), parents=parents,
                setup=setup_of(used), mixed=any(p["config_id"].nunique() > 1 for p in parts))


def fill_table(table: Table, runs: pd.DataFrame) -> Table:
    """Compute every cell, then Δ to FP, then the marks (best/ties, setup letters)."""
    for row in table.rows:
        row_runs = _select(runs, row.match)
        for col in table.columns:
            if col.delta_of:
                continue
            source = _select(runs, {"method": "fp", "protocol": row.match.get("protocol")}) if col.fp_ref \
                else row_runs
            table.cells[(row.key, col.key)] = make_cell(source, col)
    _fill_deltas(table)
    groups = compared_groups(table)
    for group in groups:
        mark_best(group)
    table.setup_legend = mark_setups(groups)
    legend = marks_caption(table)
    table.caption += f" {legend}" if legend else ""
    return table


def fp_reference(table: Table, row: Row) -> Row | None:
    """The FP row a row is compared with: same protocol, else the only FP row."""
    fp_rows = [r for r in table.rows if r.is_fp]
    same = [r for r in fp_rows if r.match.get("protocol") == row.match.get("protocol")]
    return (same or (fp_rows if len(fp_rows) == 1 else []) or [None])[0]


def _fill_deltas(table: Table) -> None:
    for col in (c for c in table.columns if c.delta_of):
        for row in table.rows:
            ref = fp_reference(table, row)
            value, ref_cell = table.cell(row.key, col.delta_of), table.cell(ref.key, col.delta_of) if ref \
                else Cell()
            if row.is_fp or value.n == 0 or ref_cell.n == 0:
                table.cells[(row.key, col.key)] = Cell()
            else:
                table.cells[(row.key, col.key)] = Cell(mean=value.mean - ref_cell.mean, n=value.n)


def compared_groups(table: Table) -> list[list[Cell]]:
    """The cells compared with each other: per value column and W/A block, the quantized rows' cells."""
    blocks = sorted({r.block for r in table.rows if not r.is_fp})
    return [[table.cell(r.key, col.key) for r in table.rows if r.block == block and not r.is_fp]
            for col in table.columns if not col.delta_of and not col.fp_ref for block in blocks]


# ------------------------------------------------------------------------------------------- rows

def block_sort_key(block: str) -> tuple[int, int, int]:
    """The FP block first, then W/A blocks by bit width."""
    return (0, 0, 0) if block == "FP" else (1, *bits_sort_key(block)) if block else (1, 0, 0)


def make_rows(runs: pd.DataFrame, with_bits: bool = True) -> list[Row]:
    """FP rows first, then one block per W/A (ascending), methods in the paper order inside a block.

    The label shows the protocol, layer policy or hparams source (``[tuned]``) only when the table holds
    several of them for a method, so a single-setup table reads as plainly as the papers' ones.
    """
    runs = runs if "hparams_source" in runs else runs.assign(hparams_source="default")
    keys = runs[["method", "protocol", "policy", "hparams_source", "bits_label"]].drop_duplicates()
    show_protocol = runs["protocol"].nunique() > 1
    multi_policy = {m for m, g in runs.groupby("method") if g["policy"].nunique() > 1}
    multi_source = {m for m, g in runs.groupby("method") if g["hparams_source"].nunique() > 1}
    rows = []
    for rec in keys.itertuples(index=False):
        is_fp = rec.method == "fp"
        block = "FP" if is_fp else (rec.bits_label if with_bits else "")
        label = rec.method + (f" · {rec.protocol}" if show_protocol else "") \
            + (f" [{rec.policy}]" if rec.method in multi_policy else "") \
            + (f" [{rec.hparams_source}]" if rec.method in multi_source else "")
        match = {"method": rec.method, "protocol": rec.protocol, "policy": rec.policy,
                 "hparams_source": rec.hparams_source}
        if with_bits:
            match["bits_label"] = rec.bits_label
        key = "|".join(str(v) for v in match.values())
        rows.append(Row(key=key, label=label, block=block, match=match, is_fp=is_fp))
    unique = {r.key: r for r in rows}.values()  # with_bits=False collapses the bit widths of a method
    return sorted(unique, key=lambda r: (block_sort_key(r.block), method_sort_key(r.match["method"]),
                                         protocol_sort_key(r.match["protocol"]), r.match["policy"],
                                         r.match["hparams_source"]))


def policy_summary(runs: pd.DataFrame) -> str:
    """``lsq default (W8A8/W8A8); alignq same/fp (W4A4/fp)``: requested policy, then what the first and
    last layers really ran at according to the layer reports."""
    parts = []
    for method, group in sorted(runs.groupby("method"), key=lambda kv: method_sort_key(kv[0])):
        texts = []
        for policy, sub in group.groupby("policy", sort=True):
            effective = sorted(set(sub["effective_policy"].dropna()))
            texts.append(f"{policy} ({', '.join(effective)})" if effective else str(policy))
        parts.append(f"{method} {', '.join(texts)}")
    return "; ".join(parts)


def caption_for(runs: pd.DataFrame, selection: str, what: str, extra: str = "") -> str:
    """The caption of a table over ``runs``: what it shows, the selection rule, the statistic, the bold rule,
    the layer policies, and what was left out or substituted."""
    rule, column = get_rule(selection), value_column(selection)
    parts = [what, f"Top-1 (%) at the {rule.caption()}.", STAT_NOTE,
             "— means no finished run (see the coverage table).", BOLD_NOTE, extra,
             f"Layer policy (first/last): {policy_summary(runs)}."]
    lacking = int(pd.to_numeric(runs[column], errors="coerce").isna().sum())
    if lacking:
        parts.append(f"{lacking} finished run(s) have no score under rule `{rule.name}` (e.g. no validation "
                     "split) and are left out of Top-1 cells.")
    fallback = int((runs["selection_source"] == "result.json").sum()) if rule.fallback_metric else 0
    if fallback:
        parts.append(f"{fallback} run(s) had no metrics.jsonl: their Top-1 is the value the trainer recorded "
                     f"for this rule in result.json ({rule.fallback_metric}).")
    if runs["synthetic"].astype(bool).any():
        parts.append("*-synth datasets are offline synthetic stand-ins, not the published datasets.")
    return " ".join(p for p in parts if p)


def marks_caption(table: Table) -> str:
    """The legend of the marks a filled table carries (empty when it has none)."""
    parts = []
    if table.setup_legend:
        legend = "; ".join(f"{k} = {v}" for k, v in sorted(table.setup_legend.items()))
        parts.append(f"Letters mark cells compared across different setups (layer policy requested → ran "
                     f"at, hyper-parameters): {legend}.")
    if any(c.mixed for c in table.cells.values()):
        parts.append("*: the cell pools runs whose specs differ beyond the seed (hparams or recipe; see the "
                     "coverage table).")
    return " ".join(parts)
