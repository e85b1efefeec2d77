"""Paper-style table layouts from the tidy runs table (``analysis.collect``).

- long-tail: methods × (dataset with ρ, arch), with Top-1, Δ to FP and head/medium/tail columns;
- domain shift: methods × source→target task, plus Avg, Δ Avg and the worst domain, one table per arch;
- standard: methods × (dataset, arch) for balanced single-domain tasks;
- bit-width sweep: methods × W/A for each (task, arch), with the FP starting point as the first column.

Rows come in W/A blocks after an FP reference block (see ``analysis.cells.make_rows``). All layouts take
the name of a model-selection rule (``analysis.selection``: ``last`` default, ``val``, ``oracle``); their
Top-1 cells average each run's test accuracy at the epoch that rule picks.
"""
from __future__ import annotations

import re

import pandas as pd

from analysis.cells import Column, Table, caption_for, done_runs, fill_table, make_rows
from analysis.selection import DEFAULT_RULE, value_column
from benchmarks.run.labels import bits_sort_key


def slug(text: str) -> str:
    """A file-name-safe version of a task or arch name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("→", "-to-")).strip("-")


def _pairs(runs: pd.DataFrame, *cols: str) -> list[tuple]:
    return sorted(set(map(tuple, runs[list(cols)].astype(str).to_numpy())))


def longtail_table(runs: pd.DataFrame, selection: str = DEFAULT_RULE) -> Table | None:
    """Long-tailed tasks (dataset name with ``-lt-r<ρ>``), all W/A blocks in one table."""
    top1 = value_column(selection)
    lt = done_runs(runs)
    lt = lt[lt["lt_ratio"].notna()]
    if lt.empty:
        return None
    columns = []
    for task, arch in _pairs(lt, "task", "arch"):
        group, match = f"{task} · {arch}", {"task": task, "arch": arch}
        columns += [
            Column(f"{group}|top1", "Top-1", group, top1, match),
            Column(f"{group}|delta", "Δ FP", group, delta_of=f"{group}|top1"),
            Column(f"{group}|head", "Head", group, "head_acc", match),
            Column(f"{group}|medium", "Med", group, "medium_acc", match),
            Column(f"{group}|tail", "Tail", group, "tail_acc", match),
        ]
    heads, tails = lt["hmt_head_min"].dropna().unique(), lt["hmt_tail_max"].dropna().unique()
    hmt = (f"Head/Med/Tail: classes with >{int(heads[0])}, {int(tails[0])}–{int(heads[0])} and "
           f"<{int(tails[0])} training images." if len(heads) == 1 and len(tails) == 1
           else "Head/Med/Tail thresholds differ between runs: see the runs CSV.")
    caption = caption_for(lt, selection, "Long-tailed training sets, balanced test sets; top-1 accuracy (%).",
                          f"Δ FP: difference to the FP row (points). {hmt} Head/Med/Tail are from the final "
                          "evaluation in result.json.")
    table = Table("longtail", "Long-tail: accuracy (%) by method and W/A", caption, make_rows(lt), columns)
    return fill_table(table, lt)


def shift_tables(runs: pd.DataFrame, selection: str = DEFAULT_RULE) -> list[Table]:
    """Domain-shift tasks (a target domain set), one table per architecture."""
    top1 = value_column(selection)
    shift = done_runs(runs)
    shift = shift[shift["target"].notna()]
    tables = []
    for arch in sorted(shift["arch"].astype(str).unique()):
        sub = shift[shift["arch"].astype(str) == arch]
        tasks = sorted(sub["task"].unique())
        parts = [{"task": t} for t in tasks]
        columns = [Column(t, t, metric=top1, match={"task": t}) for t in tasks] + [
            Column("avg", "Avg", metric=top1, parts=parts),
            Column("delta_avg", "Δ Avg", delta_of="avg"),
            Column("worst", "Worst dom.", metric="worst_domain_acc", parts=parts, reduce="min"),
        ]
        caption = caption_for(
            sub, selection,
            f"Domain shift ({arch}): target-domain top-1 accuracy (%) per source→target task.",
            "Avg: per-seed mean over tasks, over the seeds that finished every task. Δ Avg: Avg minus the FP "
            "row of the same protocol. Worst dom.: per-seed lowest per-domain test accuracy over all "
            "evaluated domains and tasks (final evaluation), then mean over seeds.")
        table = Table(f"shift_{slug(arch)}", f"Domain shift: accuracy (%) — {arch}", caption,
                      make_rows(sub), columns)
        tables.append(fill_table(table, sub))
    return tables


def standard_table(runs: pd.DataFrame, selection: str = DEFAULT_RULE) -> Table | None:
    """Balanced single-domain tasks: methods × (dataset, arch), W/A blocks."""
    top1 = value_column(selection)
    std = done_runs(runs)
    std = std[std["target"].isna() & std["lt_ratio"].isna()]
    if std.empty:
        return None
    columns = []
    for dataset, arch in _pairs(std, "dataset", "arch"):
        group, match = f"{dataset} · {arch}", {"dataset": dataset, "arch": arch}
        columns += [Column(f"{group}|top1", "Top-1", group, top1, match),
                    Column(f"{group}|delta", "Δ FP", group, delta_of=f"{group}|top1")]
    caption = caption_for(std, selection, "Standard (balanced, single-domain) tasks: top-1 accuracy (%).",
                          "Δ FP: difference to the FP row (points).")
    table = Table("standard", "Standard: accuracy (%) by method, architecture and W/A", caption,
                  make_rows(std), columns)
    return fill_table(table, std)


def sweep_tables(runs: pd.DataFrame, selection: str = DEFAULT_RULE) -> list[Table]:
    """Bit-width sweeps: for each (task, arch), methods × W/A with the FP starting point first."""
    top1 = value_column(selection)
    done = done_runs(runs)
    tables = []
    for task, arch in _pairs(done, "task", "arch"):
        sub = done[(done["task"] == task) & (done["arch"].astype(str) == arch)]
        quant = sub[sub["method"] != "fp"]
        if quant.empty:
            continue
        bits = sorted(quant["bits_label"].unique(), key=bits_sort_key)
        columns = [Column("fp", "FP", metric=top1, fp_ref=True)] + [
            Column(b, b, metric=top1, match={"bits_label": b}) for b in bits]
        caption = caption_for(sub, selection, f"Bit-width sweep on {task} ({arch}): top-1 accuracy (%).",
                              "FP: the full-precision model of the same protocol that QAT starts from.")
        rows = [r for r in make_rows(sub, with_bits=False) if not r.is_fp]
        table = Table(f"sweep_{slug(task)}_{slug(arch)}", f"Bit-width sweep: {task} — {arch}", caption,
                      rows, columns)
        tables.append(fill_table(table, sub))
    return tables


def all_tables(runs: pd.DataFrame, selection: str = DEFAULT_RULE) -> list[Table]:
    """Every layout that has data, in a fixed order: long-tail, shift, standard, sweeps."""
    tables = [longtail_table(runs, selection), *shift_tables(runs, selection),
              standard_table(runs, selection), *sweep_tables(runs, selection)]
    return [t for t in tables if t is not None]
