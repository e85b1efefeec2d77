"""Coverage: how many runs each table cell has, and what is missing, instead of silent blanks.

A cell is (task, arch, method, protocol, W/A, layer policy). The expected cells are every configuration
(method, protocol, W/A, policy) seen in a family of tasks (domain shift or not) crossed with every
(task, arch) of that family, because a grid is a product of lists; the expected seeds are those given,
else every seed seen anywhere. Missing = expected seeds with no run dir at all.
"""
from __future__ import annotations

import pandas as pd

from analysis.cells import block_sort_key
from analysis.schema import DONE, FAILED, INCOMPLETE, protocol_sort_key
from benchmarks.run.labels import method_sort_key

COVERAGE_COLUMNS = ["task", "arch", "method", "protocol", "W/A", "policy", "expected", "done",
                    "incomplete", "failed", "missing", "missing seeds", "note"]
_CONFIG = ["method", "protocol", "bits_label", "policy"]




def coverage_table(runs: pd.DataFrame, expected_seeds: list[int] | None = None) -> pd.DataFrame:
    """One line per expected cell with counts of done / incomplete / failed / missing runs."""
    if runs.empty:
        return pd.DataFrame(columns=COVERAGE_COLUMNS)
    runs = runs.assign(family=runs["target"].notna())
    seeds = sorted(set(expected_seeds) if expected_seeds is not None else set(runs["seed"].astype(int)))
    lines = []
    for _, family in runs.groupby("family"):
        tasks = sorted(set(map(tuple, family[["task", "arch"]].astype(str).to_numpy())))
        configs = sorted(set(map(tuple, family[_CONFIG].astype(str).to_numpy())))
        for task, arch in tasks:
            here = family[(family["task"] == task) & (family["arch"].astype(str) == arch)]
            for method, protocol, bits, policy in configs:
                cell = here[(here["method"] == method) & (here["protocol"] == protocol)
                            & (here["bits_label"] == bits) & (here["policy"] == policy)]
                lines.append(_coverage_line(cell, seeds, (task, arch, method, protocol, bits, policy)))
    table = pd.DataFrame(lines, columns=COVERAGE_COLUMNS)
    order = sorted(range(len(table)), key=lambda i: (
        table["task"][i], table["arch"][i],
        block_sort_key("FP" if table["method"][i] == "fp" else table["W/A"][i]),
        method_sort_key(table["method"][i]), protocol_sort_key(table["protocol"][i]), table["policy"][i]))
    return table.iloc[order].reset_index(drop=True)


def _coverage_line(cell: pd.DataFrame, seeds: list[int], key: tuple) -> list:
    counts = {s: int((cell["status"] == s).sum()) for s in (DONE, INCOMPLETE, FAILED)}
    seen = set(cell["seed"].astype(int))
    missing = [s for s in seeds if s not in seen]
    done_seeds = cell.loc[cell["status"] == DONE, "seed"].astype(int)
    notes = []
    if done_seeds.duplicated().any():
        notes.append("several done runs share a seed")
    if cell["config_id"].nunique() > 1:
        # same method/bits/task but other spec differences (hparams, recipe, task options) pooled as seeds
        notes.append(f"mixes {cell['config_id'].nunique()} configurations (hparams/recipe differ)")
    extra = sorted(seen - set(seeds))
    if extra:
        notes.append("unexpected seeds " + ",".join(map(str, extra)))
    if not len(cell):
        notes.append("no run")
    elif counts[DONE] < len(seeds) and not notes:
        notes.append("not all seeds done")
    return [*key, len(seeds), counts[DONE], counts[INCOMPLETE], counts[FAILED], len(missing),
            ",".join(map(str, missing)), "; ".join(notes)]


def coverage_summary(coverage: pd.DataFrame) -> str:
    """One line: cells complete, and runs done / incomplete / failed / missing."""
    if coverage.empty:
        return "no runs found"
    complete = int((coverage["done"] >= coverage["expected"]).sum())
    return (f"{complete}/{len(coverage)} cells complete; runs: {int(coverage['done'].sum())} done, "
            f"{int(coverage['incomplete'].sum())} incomplete, {int(coverage['failed'].sum())} failed, "
            f"{int(coverage['missing'].sum())} missing")
