"""Render tables as Markdown, LaTeX (booktabs) and CSV, deterministically.

Fixed formatting (one decimal for accuracies, signed Δ, no timestamps or paths) keeps the output
byte-stable for golden-file tests. Cell text: ``92.8 ± 0.5 (3)`` (± = half-width of the 95 % t-interval);
one run: ``92.8 (1)``; no run: ``—``; then the marks of ``analysis.marks``: bold, `` ≈`` (tie), a superscript
setup letter (``ᵃ``), ``*`` (pooled specs). The CSV carries the same marks as columns, and SD, SE and bounds.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from analysis.cells import Cell, Column, Row, Table

EMPTY = "—"


def _num(x: float) -> str:
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text


_SUPERSCRIPT = dict(zip("abcdefghijklmnoprstuvwxyz0123456789", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ⁰¹²³⁴⁵⁶⁷⁸⁹"))


def value_text(cell: Cell) -> str:
    """``mean ± half-width (n)`` and the cell's marks except bold (the formats bold differently)."""
    if cell.n == 0:
        return EMPTY
    half = cell.summary.half_width
    spread = f" ± {_num(half)}" if cell.n > 1 and not math.isnan(half) else ""
    marks = (" ≈" if cell.tie else "") + ("*" if cell.mixed else "") \
        + "".join(_SUPERSCRIPT[ch] for ch in cell.setup_mark)
    return f"{_num(cell.mean)}{spread} ({cell.n}){marks}"


def delta_text(cell: Cell, row: Row) -> str:
    if row.is_fp:
        return "ref"
    if cell.n == 0:
        return EMPTY
    text = f"{cell.mean:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def cell_text(table: Table, row: Row, col: Column) -> str:
    cell = table.cell(row.key, col.key)
    return delta_text(cell, row) if col.delta_of else value_text(cell)


def _groups(table: Table) -> list[str]:
    return list(dict.fromkeys(c.group for c in table.columns if c.group))


def _labels(table: Table) -> list[str]:
    """Column labels; with several column groups each label carries its group (Markdown has one header)."""
    several = len(_groups(table)) > 1
    return [f"{c.group} {c.label}" if several and c.group else c.label for c in table.columns]


def _title(table: Table) -> str:
    groups = _groups(table)
    return f"{table.title} — {groups[0]}" if len(groups) == 1 else table.title


def _has_blocks(table: Table) -> bool:
    return any(r.block for r in table.rows)


def _block_cells(table: Table) -> list[str]:
    """The W/A label on the first row of each block only, as in the papers."""
    out, last = [], None
    for row in table.rows:
        out.append(row.block if row.block != last else "")
        last = row.block
    return out


# -------------------------------------------------------------------------------------------- Markdown

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    lead = (["W/A"] if _has_blocks(table) else []) + ["Method"]
    header = lead + _labels(table)
    lines = [f"### {_title(table)}", "",
             "| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join([":--"] * len(lead) + ["--:"] * len(table.columns)) + "|"]
    blocks = _block_cells(table)
    for row, block in zip(table.rows, blocks):
        cells = ([block] if _has_blocks(table) else []) + [row.label]
        for col in table.columns:
            text = cell_text(table, row, col)
            cells.append(f"**{text}**" if table.cell(row.key, col.key).best and not col.delta_of else text)
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    lines += ["", table.caption, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- LaTeX

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "±": r"$\pm$", "→": r"$\to$", "Δ": r"$\Delta$", "ρ": r"$\rho$", "—": "--", "–": "--",
          "·": r"$\cdot$", "<": r"$<$", ">": r"$>$", "≈": r"$\approx$", "×": r"$\times$",
          "√": r"$\surd$", "−": "-",
          **{sup: rf"\textsuperscript{{{ch}}}" for ch, sup in _SUPERSCRIPT.items()}}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _latex_cell(table: Table, row: Row, col: Column) -> str:
    text = latex_escape(cell_text(table, row, col))
    if col.delta_of and text[:1] == "-" and text[1:2].isdigit():
        text = f"${text}$"  # a real minus sign, not a hyphen
    return rf"\textbf{{{text}}}" if table.cell(row.key, col.key).best and not col.delta_of else text


def to_latex(table: Table) -> str:
    lead = (["W/A"] if _has_blocks(table) else []) + ["Method"]
    n_lead = len(lead)
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{latex_escape(_title(table))}. {latex_escape(table.caption)}}}",
           rf"\label{{tab:{table.name}}}",
           r"\begin{tabular}{" + "l" * n_lead + "r" * len(table.columns) + "}", r"\toprule"]
    groups = _groups(table)
    if len(groups) > 1:
        spans, rules, start = [], [], n_lead + 1
        for group in groups:
            width = sum(1 for c in table.columns if c.group == group)
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        ungrouped = sum(1 for c in table.columns if not c.group)
        out.append(" & ".join([""] * n_lead + spans + [""] * ungrouped) + r" \\")
        out.append(" ".join(rules))
    labels = [c.label for c in table.columns] if len(groups) > 1 else _labels(table)
    out.append(" & ".join(latex_escape(x) for x in lead + labels) + r" \\")
    out.append(r"\midrule")
    blocks, last = _block_cells(table), None
    for row, block in zip(table.rows, blocks):
        if _has_blocks(table) and last is not None and row.block != last:
            out.append(r"\midrule")
        last = row.block
        cells = ([latex_escape(block)] if _has_blocks(table) else []) + [latex_escape(row.label)]
        cells += [_latex_cell(table, row, col) for col in table.columns]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- CSV

def to_frame(table: Table) -> pd.DataFrame:
    """Long format: one line per (row, column) with the numbers unrounded."""
    records = []
    for row in table.rows:
        for col in table.columns:
            cell = table.cell(row.key, col.key)
            records.append({
                "table": table.name, "block": row.block, "row": row.label, **row.match,
                "column_group": col.group, "column": col.label, "kind": "delta" if col.delta_of else "value",
                "mean": cell.mean if cell.n else math.nan, "n": cell.n, "sd": cell.summary.sd,
                "se": cell.summary.se, "ci_low": cell.summary.ci_low, "ci_high": cell.summary.ci_high,
                "best": cell.best, "tie": cell.tie, "setup_mark": cell.setup_mark, "mixed": cell.mixed,
                "setup": cell.setup if cell.n and not col.delta_of else "",
            })
    return pd.DataFrame(records)


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    to_frame(table).to_csv(buf, index=False, float_format="%.4f", lineterminator="\n")
    return buf.getvalue()


def frame_markdown(df: pd.DataFrame, title: str, caption: str = "") -> str:
    """A plain DataFrame (coverage, ours vs published) as a Markdown table."""
    lines = [f"### {title}", ""]
    if df.empty:
        lines.append("(no rows)")
    else:
        lines.append("| " + " | ".join(_md_escape(str(c)) for c in df.columns) + " |")
        lines.append("|" + "|".join(["--"] * len(df.columns)) + "|")
        for rec in df.itertuples(index=False):
            lines.append("| " + " | ".join(_md_escape(_plain(v)) for v in rec) + " |")
    return "\n".join(lines + ["", caption, ""] if caption else lines + [""])


def frame_latex(df: pd.DataFrame, title: str, name: str, caption: str = "") -> str:
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{latex_escape(title)}. {latex_escape(caption)}}}", rf"\label{{tab:{name}}}",
           r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
           " & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule"]
    out += [" & ".join(latex_escape(_plain(v)) for v in rec) + r" \\" for rec in df.itertuples(index=False)]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def _plain(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else _num(value)
    return "" if value is None else str(value)


def write_table(table: Table, out_dir: str | Path) -> dict[str, Path]:
    """``<out_dir>/<name>.md``, ``.tex`` and ``.csv``; returns the paths by format."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, text in (("md", to_markdown(table)), ("tex", to_latex(table)), ("csv", to_csv(table))):
        paths[ext] = out_dir / f"{table.name}.{ext}"
        paths[ext].write_text(text)
    return paths
