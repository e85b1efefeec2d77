"""FP-normalised scores per method and task: the input of the across-task statistics (``analysis.aggregate``).

A *task* here is one (task, arch, protocol, W/A) of the grid (wave-2 recipe: tasks have different scales, so
W2/A2 and W4/A4 of one dataset are different tasks). A run's score is its top-1 under the selection rule
divided by the top-1 of its own FP parent (the FP run it started from, ``init_from``; the FP run of the same
task, arch, protocol and seed where a record lacks it), under the same rule: 1.0 = as good as the
full-precision model of the same seed. An *entrant* is a quantized method, split by layer policy or tuned
hyper-parameters when a method ran under several (``lsq [8bit/8bit]``, ``lsq [tuned]``).

Only tasks that every entrant ran are kept, so the aggregates compare the same tasks; what is left out, and
why, is returned as notes for the captions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.cells import done_runs, setup_of
from analysis.selection import value_column
from benchmarks.run.labels import bits_sort_key, method_sort_key


@dataclass
class ScoreSet:
    tasks: list[str] = field(default_factory=list)
    entrants: list[str] = field(default_factory=list)  # in the papers' method order
    methods: dict[str, str] = field(default_factory=dict)  # entrant -> method (for styles)
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)  # entrant -> per-task run scores
    notes: list[str] = field(default_factory=list)

    def runs_per_task(self) -> int:
        """The fewest runs any entrant has on any task (0 when empty)."""
        return min((s.size for per in self.scores.values() for s in per), default=0)

    def task_means(self) -> np.ndarray:
        """Tasks × entrants matrix of the mean score (the blocks of the rank tests)."""
        return np.array([[float(np.mean(self.scores[e][t])) for e in self.entrants]
                         for t in range(len(self.tasks))])


def entrant_labels(quant: pd.DataFrame) -> pd.Series:
    """``lsq``, or ``lsq [8bit/8bit]`` / ``lsq [tuned]`` where a method ran under several setups."""
    multi_policy = {m for m, g in quant.groupby("method") if g["policy"].nunique() > 1}
    multi_source = {m for m, g in quant.groupby("method") if g["hparams_source"].nunique() > 1}
    return quant.apply(lambda r: r["method"] + (f" [{r['policy']}]" if r["method"] in multi_policy else "")
                       + (f" [{r['hparams_source']}]" if r["method"] in multi_source else ""), axis=1)


def _task_labels(quant: pd.DataFrame) -> pd.Series:
    several = quant["protocol"].nunique() > 1
    return quant.apply(lambda r: f"{r['task']} · {r['arch']} · {r['bits_label']}"
                       + (f" · {r['protocol']}" if several else ""), axis=1)


def _parent_scores(runs: pd.DataFrame, fp: pd.DataFrame, column: str) -> pd.Series:
    """Each run's FP parent score: by ``init_from``, else the FP run of the same task/arch/protocol/seed."""
    by_id = dict(zip(fp["run_id"], fp[column]))
    key = ["task", "arch", "protocol", "seed"]
    unique = fp.groupby(key).filter(lambda g: len(g) == 1)
    by_key = {tuple(k): v for k, v in zip(unique[key].itertuples(index=False, name=None), unique[column])}
    return pd.Series([by_id.get(r["init_from"], by_key.get(tuple(r[k] for k in key), np.nan))
                      for _, r in runs.iterrows()], index=runs.index, dtype=float)


def normalised_scores(runs: pd.DataFrame, selection: str) -> ScoreSet:
    """The FP-normalised score of every done quantized run, grouped by entrant and common task."""
    column = value_column(selection)
    done = done_runs(runs).copy()
    done[column] = pd.to_numeric(done[column], errors="coerce")
    fp = done[(done["method"] == "fp") & done[column].notna()]
    quant = done[(done["method"] != "fp") & done[column].notna()].copy()
    if quant.empty:
        return ScoreSet(notes=["no finished quantized run with a score under this rule"])
    if "hparams_source" not in quant:
        quant["hparams_source"] = "default"
    quant["entrant"], quant["task_key"] = entrant_labels(quant), _task_labels(quant)
    quant["parent"] = _parent_scores(quant, fp, column)
    notes = []
    orphans = int(quant["parent"].isna().sum())
    if orphans:
        notes.append(f"{orphans} run(s) without a finished FP parent are left out (nothing to normalise by)")
    quant = quant[quant["parent"].notna() & (quant["parent"] > 0)]
    quant = quant.assign(score=quant[column] / quant["parent"])
    entrants = sorted(quant["entrant"].unique(), key=lambda e: (method_sort_key(e.split(" ")[0]), e))
    per_task = quant.groupby("task_key")["entrant"].agg(set)
    common = [t for t, seen in per_task.items() if seen == set(entrants)]
    left_out = sorted(set(per_task.index) - set(common))
    if left_out:
        notes.append(f"{len(left_out)} task(s) not run by every method are left out: {', '.join(left_out)}")
    order = quant.drop_duplicates("task_key").set_index("task_key")
    common.sort(key=lambda t: (order.loc[t, "task"], str(order.loc[t, "arch"]),
                               bits_sort_key(order.loc[t, "bits_label"]), order.loc[t, "protocol"]))
    quant = quant.sort_values(["seed", "run_id"], kind="stable")  # a fixed run order: bootstraps index it
    scores = {e: [quant.loc[(quant["entrant"] == e) & (quant["task_key"] == t), "score"].to_numpy()
                  for t in common] for e in entrants}
    setups = {e: setup_of(quant[quant["entrant"] == e]) for e in entrants}
    if len(set(setups.values())) > 1:
        described = "; ".join(f"{e}: {s}" for e, s in setups.items())
        notes.append(f"the methods ran under different setups ({described})")
    methods = dict(zip(quant["entrant"], quant["method"]))
    return ScoreSet(tasks=common, entrants=entrants, methods=methods, scores=scores, notes=notes)
