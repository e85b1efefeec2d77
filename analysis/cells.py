"""The table model: rows, columns and cells, and how cells are computed from the runs table.

A :class:`Table` is plain data; ``analysis.tables`` defines the paper layouts with it and
``analysis.render`` turns it into Markdown, LaTeX and CSV. Rows are grouped in W/A blocks with the FP
reference block first (AlignQ Tables 4-5 layout);
a cell is the mean ± sample std over the seeds of *done* runs, with n shown. Every ordering below is
explicit so the rendered text is byte-stable for golden-file tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.schema import DONE, SELECTION_RULES, protocol_sort_key
from benchmarks.run.labels import bits_sort_key, method_sort_key

STD_NOTE = "± is the sample standard deviation over seeds (n runs); (n) is the number of finished runs."


@dataclass
class Cell:
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    best: bool = False


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


def _seed_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(dtype=float)
    return pd.Series(values, index=runs["seed"].to_numpy()).dropna()


def column_values(col: Column, runs: pd.DataFrame) -> pd.Series:
    """Per-run values (indexed by seed) of ``col`` among ``runs`` (already restricted to one row)."""
    if not col.parts:
        return _seed_values(_select(runs, col.match), col.metric)
    # Avg/Worst over tasks: only seeds that finished every task, so the mean compares like with like.
    per_part = [_seed_values(_select(runs, p), col.metric).groupby(level=0).mean() for p in col.parts]
    if not per_part or any(s.empty for s in per_part):
        return pd.Series(dtype=float)
    frame = pd.concat(per_part, axis=1, join="inner")
    return frame.min(axis=1) if col.reduce == "min" else frame.mean(axis=1)


def make_cell(values: pd.Series) -> Cell:
    n = int(values.size)
    if n == 0:
        return Cell()
    return Cell(mean=float(values.mean()), std=float(values.std(ddof=1)) if n > 1 else math.nan, n=n)


def fill_table(table: Table, runs: pd.DataFrame) -> Table:
    """Compute every cell, then Δ to FP, then the best marks."""
    for row in table.rows:
        row_runs = _select(runs, row.match)
        for col in table.columns:
            if col.delta_of:
                continue
            source = _select(runs, {"method": "fp", "protocol": row.match.get("protocol")}) if col.fp_ref \
                else row_runs
            table.cells[(row.key, col.key)] = make_cell(column_values(col, source))
    _fill_deltas(table)
    _mark_best(table)
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


def _mark_best(table: Table) -> None:
    """Bold the highest mean (at the printed precision, so ties are all bold) per column and W/A block,
    among quantized rows only; a block with a single value has nothing to compare."""
    blocks = sorted({r.block for r in table.rows if not r.is_fp})
    for col in (c for c in table.columns if not c.delta_of and not c.fp_ref):
        for block in blocks:
            cells = [table.cell(r.key, col.key) for r in table.rows if r.block == block and not r.is_fp]
            filled = [c for c in cells if c.n > 0]
            if len(filled) < 2:
                continue
            top = max(round(c.mean, 1) for c in filled)
            for c in filled:
                c.best = round(c.mean, 1) == top


# ------------------------------------------------------------------------------------------- rows

def block_sort_key(block: str) -> tuple[int, int, int]:
    """The FP block first, then W/A blocks by bit width."""
    return (0, 0, 0) if block == "FP" else (1, *bits_sort_key(block)) if block else (1, 0, 0)


def make_rows(runs: pd.DataFrame, with_bits: bool = True) -> list[Row]:
    """FP rows first, then one block per W/A (ascending), methods in the paper order inside a block.

    The label shows the protocol or layer policy only when the table holds several of them, so a
    single-policy table reads as plainly as the papers' ones.
    """
    keys = runs[["method", "protocol", "policy", "bits_label"]].drop_duplicates()
    show_protocol = runs["protocol"].nunique() > 1
    multi_policy = {m for m, g in runs.groupby("method") if g["policy"].nunique() > 1}
    rows = []
    for rec in keys.itertuples(index=False):
        is_fp = rec.method == "fp"
        block = "FP" if is_fp else (rec.bits_label if with_bits else "")
        label = rec.method + (f" · {rec.protocol}" if show_protocol else "") \
            + (f" [{rec.policy}]" if rec.method in multi_policy else "")
        match = {"method": rec.method, "protocol": rec.protocol, "policy": rec.policy}
        if with_bits:
            match["bits_label"] = rec.bits_label
        key = "|".join(str(v) for v in match.values())
        rows.append(Row(key=key, label=label, block=block, match=match, is_fp=is_fp))
    unique = {r.key: r for r in rows}.values()  # with_bits=False collapses the bit widths of a method
    return sorted(unique, key=lambda r: (block_sort_key(r.block), method_sort_key(r.match["method"]),
                                         protocol_sort_key(r.match["protocol"]), r.match["policy"]))


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
    policies = policy_summary(runs)
    parts = [what, f"Top-1 (%) selected at: {SELECTION_RULES.get(selection, selection)} ({selection}).",
             STD_NOTE, "— means no finished run (see the coverage table).",
             "Bold: best quantized method per column within a W/A block.", extra,
             f"Layer policy (first/last): {policies}."]
    lacking = int(pd.to_numeric(runs[selection], errors="coerce").isna().sum())
    if lacking:
        parts.append(f"{lacking} finished run(s) recorded no {selection} and are left out of Top-1 cells.")
    if runs["synthetic"].astype(bool).any():
        parts.append("*-synth datasets are offline synthetic stand-ins, not the published datasets.")
    return " ".join(p for p in parts if p)
