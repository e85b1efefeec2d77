"""The comparison tables of the report: each method against a baseline per task; the across-task aggregate.

- ``paired_table``: per (task, arch, protocol, W/A), every quantized method minus the baseline (default LSQ)
  on the seeds both ran from the same FP parent: mean difference in points, its 95 % t-interval, the paired
  t-test and Wilcoxon signed-rank p-values (``analysis.stats``).
- ``aggregate_tables``: over the tasks every method ran, on FP-normalised scores (``analysis.scores``): the
  IQM with its stratified-bootstrap 95 % interval, P(method > baseline) with its interval, and the mean ranks
  with the Friedman test and the Nemenyi critical difference (``analysis.aggregate``). A statistic the data
  cannot support is not shown, and the caption says why (one seed, fewer than two tasks or three methods).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis import aggregate as agg
from analysis.cells import done_runs, setup_of
from analysis.scores import ScoreSet, entrant_labels
from analysis.selection import get_rule, value_column
from analysis.stats import paired_difference
from benchmarks.run.labels import bits_sort_key, method_sort_key

DEFAULT_BASELINE = "lsq"
PAIRED_COLUMNS = ["task", "arch", "protocol", "W/A", "method", "baseline", "setup", "n pairs",
                  "Δ vs baseline", "95% CI", "paired t p", "Wilcoxon p", "verdict"]


def _p(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"


def paired_table(runs: pd.DataFrame, selection: str,
                 baseline: str = DEFAULT_BASELINE) -> tuple[pd.DataFrame, str]:
    """Every method minus ``baseline`` per task and W/A, paired by seed and FP parent.

    Methods are split by setup as in the aggregate (``lsq [tuned]``), so tuned and default runs, or two layer
    policies, are never pooled; the ``setup`` column says whether a pair ran under the baseline's setup.
    """
    column, rule = value_column(selection), get_rule(selection)
    done = done_runs(runs)
    done = done[(done["method"] != "fp") & pd.to_numeric(done[column], errors="coerce").notna()]
    lines = []
    if not done.empty:
        done = done.assign(entrant=entrant_labels(done))
    for (task, arch, protocol, bits), sub in done.groupby(["task", "arch", "protocol", "bits_label"],
                                                          sort=False):
        for base_name, base in sub[sub["method"] == baseline].groupby("entrant", sort=True):
            for name, other in sub[sub["method"] != baseline].groupby("entrant", sort=False):
                cmp = paired_difference(_by_seed(other, column), _by_seed(base, column),
                                        _parents(other), _parents(base))
                interval = f"[{cmp.ci_low:+.1f}, {cmp.ci_high:+.1f}]" if cmp.n > 1 else ""
                same = setup_of(other) == setup_of(base)
                lines.append({"task": task, "arch": str(arch), "protocol": protocol, "W/A": bits,
                              "method": name, "baseline": base_name, "setup": "same" if same else "differs",
                              "n pairs": cmp.n,
                              "Δ vs baseline": "" if cmp.n == 0 else f"{cmp.mean_diff:+.1f}",
                              "95% CI": interval, "paired t p": _p(cmp.t_p),
                              "Wilcoxon p": _p(cmp.wilcoxon_p),
                              "verdict": _verdict(cmp.n, cmp.separated, cmp.mean_diff)})
    table = pd.DataFrame(lines, columns=PAIRED_COLUMNS)
    if not table.empty:
        order = sorted(range(len(table)), key=lambda i: (
            table["task"][i], table["arch"][i], table["protocol"][i], bits_sort_key(table["W/A"][i]),
            table["baseline"][i], method_sort_key(table["method"][i].split(" ")[0]), table["method"][i]))
        table = table.iloc[order].reset_index(drop=True)
    caption = (f"Each method minus {baseline} in top-1 points at the {rule.caption()}, on the seeds both ran "
               "from the same FP parent (n pairs). 95% CI: Student t-interval of the mean paired difference; "
               "paired t p: two-sided paired t-test; Wilcoxon p: two-sided exact Wilcoxon signed-rank test "
               "(with 3 pairs its smallest possible p is 0.25). Verdict: better/worse when the interval "
               "excludes 0, else 'not separated'; fewer than 2 pairs: no test. setup: 'differs' when the two "
               "ran under different layer policies or tuned/default hyper-parameters (the paper tables' "
               "captions list them).")
    if table.empty:
        caption = f"No task has finished runs of {baseline} and another method. " + caption
    return table, caption


def _by_seed(runs: pd.DataFrame, column: str) -> dict[int, float]:
    return pd.to_numeric(runs[column], errors="coerce").groupby(runs["seed"]).mean().to_dict()


def _parents(runs: pd.DataFrame) -> dict[int, str]:
    return runs.groupby("seed")["init_from"].agg(lambda p: ",".join(sorted(map(str, set(p))))).to_dict()


def _verdict(n: int, separated: bool, diff: float) -> str:
    if n < 2:
        return "n < 2: no test"
    return ("better" if diff > 0 else "worse") if separated else "not separated"


# ------------------------------------------------------------------------------------------------ aggregate

@dataclass
class Aggregate:
    """The aggregate tables and what could not be shown, with why."""

    summary: pd.DataFrame
    ranks: pd.DataFrame
    summary_caption: str
    ranks_caption: str
    cd: float = math.nan
    mean_ranks: dict[str, float] = field(default_factory=dict)
    not_shown: list[str] = field(default_factory=list)


def aggregate_tables(scores: ScoreSet, selection: str, baseline: str = DEFAULT_BASELINE,
                     reps: int = agg.IQM_REPS, seed: int = 0) -> Aggregate:
    rule = get_rule(selection)
    n_tasks, min_runs = len(scores.tasks), scores.runs_per_task()
    not_shown: list[str] = []
    if n_tasks == 0:
        not_shown.append("no task was run by every method (" + "; ".join(scores.notes) + ")")
    elif min_runs < 2:
        not_shown.append("95% intervals: a method has a single run (seed) on some task, so the bootstrap has "
                         "nothing to resample there")
    bases = [e for e in scores.entrants if scores.methods.get(e) == baseline]
    base = bases[0] if len(bases) == 1 else None
    if n_tasks and base is None:
        not_shown.append(f"P(improvement): the baseline {baseline} is not among the compared methods "
                         "(or ran under several setups)")
    rows = []
    for e in scores.entrants if n_tasks else []:
        s = scores.scores[e]
        low, high = agg.iqm_interval(s, reps, seed) if min_runs >= 2 else (math.nan, math.nan)
        row = {"method": e, "tasks": n_tasks, "runs": int(sum(x.size for x in s)), "IQM": f"{agg.iqm(s):.3f}",
               "IQM 95% CI": _interval(low, high)}
        if base is not None:
            poi = agg.probability_of_improvement(s, scores.scores[base])
            p_low, p_high = (math.nan, math.nan) if min_runs < 2 else (0.5, 0.5) if e == base \
                else agg.poi_interval(s, scores.scores[base], reps, seed)
            row[f"P(> {baseline})"], row[f"P(> {baseline}) 95% CI"] = f"{poi:.3f}", _interval(p_low, p_high)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary_caption = (
        f"Across tasks, on FP-normalised top-1: each run's top-1 ÷ its own FP parent's, both at the "
        f"{rule.caption()}. "
        "IQM: interquartile mean of all runs × tasks (25 % trimmed at each end); IQM 95% CI: percentile "
        f"interval of a stratified bootstrap ({reps} replicates resampling runs within each task, "
        f"seed {seed}). "
        f"P(> {baseline}): probability that a run of the method beats a run of {baseline} on the same task "
        "(Mann–Whitney U / (n_x n_y), ties ½, averaged over tasks), with its bootstrap interval; 0.5 = no "
        f"difference. Tasks: {', '.join(scores.tasks) or 'none'}.")
    ranks, ranks_caption, cd, mean_ranks = _ranks(scores, rule.caption(), not_shown)
    summary_caption += _why(not_shown, scores.notes)
    return Aggregate(summary, ranks, summary_caption, ranks_caption, cd, mean_ranks, not_shown)


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _why(not_shown: list[str], notes: list[str]) -> str:
    parts = [f" Not shown: {'; '.join(not_shown)}." if not_shown else "",
             f" Note: {'; '.join(notes)}." if notes else ""]
    return "".join(parts)


def _ranks(scores: ScoreSet, rule_caption: str, not_shown: list[str]
           ) -> tuple[pd.DataFrame, str, float, dict[str, float]]:
    k, n = len(scores.entrants), len(scores.tasks)
    caption = (f"Mean rank over tasks (1 = best) of each method's mean FP-normalised top-1 per task, at the "
               f"{rule_caption}; Friedman test over the tasks as blocks; Nemenyi critical difference "
               "CD = q_0.05 × sqrt(k(k+1)/(6N)), q_0.05 the studentized range quantile (df = inf) / sqrt(2) "
               "(Demšar 2006): methods whose mean ranks differ by less than CD are not distinguishable.")
    why = []
    if n < 2:
        why.append(f"ranks: {n} task(s); ranking needs at least 2 tasks")
    elif k < 3:
        why.append(f"Friedman/Nemenyi: {k} method(s); the test needs at least 3 (see P(improvement))")
    if why:
        not_shown.extend(why)
        return pd.DataFrame(columns=["method", "mean rank"]), caption + _why(why, []), math.nan, {}
    matrix = scores.task_means()
    ranks = agg.mean_ranks(matrix)
    stat, p = agg.friedman(matrix)
    cd = agg.critical_difference(k, n)
    table = pd.DataFrame({"method": scores.entrants, "mean rank": [f"{r:.2f}" for r in ranks]})
    table = table.iloc[sorted(range(k), key=lambda i: (ranks[i], i))].reset_index(drop=True)
    caption += (f" N = {n} tasks, k = {k} methods: Friedman chi² = {stat:.2f}, p = {p:.3g}; "
                f"CD = {cd:.2f}.")
    if n < 5:
        caption += " With fewer than 5 tasks the test has little power (autorank refuses such data)."
    return table, caption, cd, dict(zip(scores.entrants, map(float, ranks)))

