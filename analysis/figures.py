"""Figures for a paper column (3.4 in wide, 8 pt fonts), each written as PNG and PDF.

Every ``plot_*`` function takes the tidy runs table (done runs are used, never partial ones), writes one
file per (task, arch[, W/A]) and returns the PNG paths, or None (with a log line) when the data it needs
is absent, so a report on a partial sweep still renders what it can.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis import plotkit as kit
from analysis.cells import done_runs
from analysis.tables import slug
from benchmarks.run.labels import bits_sort_key


def _name(*parts: str) -> str:
    """File stem part: ``task__arch__bits`` in file-name-safe form."""
    return "__".join(slug(p) for p in parts)


def _metric_vs_bits(runs: pd.DataFrame, out_dir: Path, metric: str, ylabel: str, prefix: str,
                    scale: float = 1.0) -> list[Path] | None:
    done = done_runs(runs)
    done = done[pd.to_numeric(done[metric], errors="coerce").notna()]
    paths = []
    for (task, arch), sub in kit.groups(done, ["task", "arch"]):
        quant = sub[sub["method"] != "fp"]
        if quant.empty:
            continue
        bits = sorted(quant["bits_label"].unique(), key=bits_sort_key)
        with matplotlib.rc_context(kit.RC):
            fig, ax = kit.new_figure(2.3)
            for label, method, s in kit.series_of(sub):
                values = pd.to_numeric(s[metric], errors="coerce") * scale
                if method == "fp":
                    ax.axhline(values.mean(), color="0.3", ls="--", lw=1, label=label.replace("fp", "FP", 1))
                    continue
                stats = values.groupby(s["bits_label"]).agg(["mean", "std"]).reindex(bits)
                x = np.arange(len(bits))
                ax.plot(x, stats["mean"], marker="o", color=kit.color(method), label=label)
                lo, hi = stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0)
                ax.fill_between(x, lo, hi, color=kit.color(method), alpha=0.2, lw=0)
            ax.set_xticks(np.arange(len(bits)), bits)
            ax.set_xlabel("weight / activation bits")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{task} · {arch}")
            ax.legend(frameon=False, ncols=2, loc="best")
            paths.append(kit.save(fig, out_dir, f"{prefix}__{_name(task, arch)}"))
    return paths or kit.skip(f"{prefix}: no quantized runs with {metric}")


def plot_acc_vs_bits(runs: pd.DataFrame, out_dir: Path, selection: str = "top1_last") -> list[Path] | None:
    """Top-1 vs W/A per method, mean line with ±std band over seeds; FP as a dashed reference line."""
    return _metric_vs_bits(runs, Path(out_dir), selection, f"top-1 (%), {selection}", "acc_vs_bits")


def plot_ece_vs_bits(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """ECE (15 bins, %) vs W/A per method, with ±std bands."""
    return _metric_vs_bits(runs, Path(out_dir), "ece", "ECE (%)", "ece_vs_bits", scale=100.0)


def plot_hmt_bars(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Head / medium / tail accuracy per method (FP first), one figure per (task, arch, W/A)."""
    parts = [("head_acc", "Head"), ("medium_acc", "Medium"), ("tail_acc", "Tail")]
    paths = []
    def need(d: pd.DataFrame) -> pd.DataFrame:
        # a balanced set has only head classes: nothing to compare, so only runs with a medium or tail
        split = pd.to_numeric(d["medium_acc"], errors="coerce").notna() \
            | pd.to_numeric(d["tail_acc"], errors="coerce").notna()
        return d[split.astype(bool)]

    for task, arch, bits, sub in kit.per_bits(runs, need):
        series = kit.series_of(sub)
        width = 0.8 / max(len(series), 1)
        with matplotlib.rc_context(kit.RC):
            fig, ax = kit.new_figure(2.2)
            for i, (label, method, s) in enumerate(series):
                vals = [pd.to_numeric(s[c], errors="coerce") for c, _ in parts]
                x = np.arange(len(parts)) + (i - (len(series) - 1) / 2) * width
                ax.bar(x, [v.mean() for v in vals], width, yerr=[v.std() if len(v) > 1 else 0 for v in vals],
                       color=kit.color(method), label=label, capsize=1.5, error_kw={"lw": 0.6})
            ax.set_xticks(np.arange(len(parts)), [p for _, p in parts])
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{task} · {arch} · {bits}")
            kit.legend_below(ax, len(series))
            paths.append(kit.save(fig, Path(out_dir), f"hmt__{_name(task, arch, bits)}"))
    return paths or kit.skip("hmt: no run with head/medium/tail accuracy")


def plot_per_class(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Per-class accuracy against the class's training-image count (log x), mean over seeds."""
    paths = []
    def need(d: pd.DataFrame) -> pd.DataFrame:
        d = kit.has_list("train_class_counts")(kit.has_list("per_class_acc")(d))
        imbalanced = d["train_class_counts"].map(lambda c: max(c) > 1.5 * max(min(c), 1))
        return d[imbalanced.astype(bool)]  # balanced counts would put every class at one x

    for task, arch, bits, sub in kit.per_bits(runs, need):
        counts = np.asarray(sub["train_class_counts"].iloc[0], dtype=float)
        with matplotlib.rc_context(kit.RC):
            fig, ax = kit.new_figure(2.3)
            for label, method, s in kit.series_of(sub):
                accs = [a for a in s["per_class_acc"] if len(a) == len(counts)]
                if not accs:
                    continue
                order = np.argsort(counts)
                mean = np.mean(np.asarray(accs, dtype=float), axis=0)
                ax.plot(counts[order], mean[order], marker="o", color=kit.color(method), label=label)
            ax.set_xscale("log")
            for threshold in sub[["hmt_tail_max", "hmt_head_min"]].dropna().iloc[:1].to_numpy().ravel():
                ax.axvline(float(threshold), color="0.7", ls=":", lw=0.8)  # tail | medium | head borders
            ax.set_xlabel("training images of the class (log scale)")
            ax.set_ylabel("class accuracy (%)")
            ax.set_title(f"{task} · {arch} · {bits}")
            ax.legend(frameon=False, loc="best")
            paths.append(kit.save(fig, Path(out_dir), f"per_class__{_name(task, arch, bits)}"))
    return paths or kit.skip("per_class: no run with per-class accuracy and class counts")


def plot_reliability(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Reliability diagram: accuracy vs confidence per bin, pooled over seeds (count-weighted)."""
    paths = []
    for task, arch, bits, sub in kit.per_bits(runs, kit.has_list("reliability")):
        with matplotlib.rc_context(kit.RC):
            fig, ax = kit.new_figure(2.6)
            ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfect calibration")
            for label, method, s in kit.series_of(sub):
                rel = [r for r in s["reliability"] if r.get("bin_count")]
                if not rel:
                    continue
                counts = [np.asarray(r["bin_count"], dtype=float) for r in rel]
                count = np.sum(counts, axis=0)
                conf = np.sum([kit.fraction(r["bin_confidence"]) * c for r, c in zip(rel, counts)], axis=0)
                acc = np.sum([kit.fraction(r["bin_accuracy"]) * c for r, c in zip(rel, counts)], axis=0)
                keep = count > 0
                ax.plot(conf[keep] / count[keep], acc[keep] / count[keep], marker="o",
                        color=kit.color(method), label=label)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{task} · {arch} · {bits}")
            kit.legend_below(ax, 3)
            paths.append(kit.save(fig, Path(out_dir), f"reliability__{_name(task, arch, bits)}"))
    return paths or kit.skip("reliability: no run with reliability bins")


def plot_shift_heatmap(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Accuracy of each (method, source) row on each evaluated domain (columns), per (arch, W/A).

    One heatmap with method-major rows rather than a panel per method: at column width, panels would
    leave no room for the domain names.
    """
    import seaborn as sns

    done = kit.has_list("per_domain_acc")(done_runs(runs))
    done = done[done["target"].notna()]
    paths = []
    for (arch, bits), sub in kit.groups(done, ["arch", "bits_label"]):
        short = kit.short_domain
        long = [(f"{label} | {short(src)}", short(dom), acc) for label, _, s in kit.series_of(sub)
                for src, pda in zip(s["dataset"], s["per_domain_acc"]) for dom, acc in pda.items()]
        frame = pd.DataFrame(long, columns=["row", "domain", "acc"])
        grid = frame.pivot_table(index="row", columns="domain", values="acc", aggfunc="mean", sort=False)
        grid = grid[sorted(grid.columns)]
        synth = " (synthetic data)" if sub["synthetic"].astype(bool).any() else ""
        with matplotlib.rc_context(kit.RC):
            fig, ax = kit.new_figure(0.9 + 0.22 * len(grid))
            sns.heatmap(grid, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".1f",
                        annot_kws={"fontsize": 6.5}, cbar_kws={"label": "accuracy (%)"})
            ax.set_xlabel("evaluated domain")
            ax.set_ylabel("method | source domain")
            ax.tick_params(axis="x", rotation=0)
            ax.set_title(f"{arch} · {bits}{synth}")
            paths.append(kit.save(fig, Path(out_dir), f"shift_heatmap__{_name(arch, bits)}"))
    return paths or kit.skip("shift_heatmap: no domain-shift run with per-domain accuracy")


def plot_training_curves(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Train loss and test accuracy per epoch (metrics.jsonl), mean ± std over seeds, done runs only."""
    if curves is None or curves.empty:
        return kit.skip("training_curves: no metrics.jsonl")
    done = done_runs(runs)
    paths = []
    for task, arch, bits, sub in kit.per_bits(runs, lambda d: d[d["run_id"].isin(curves["run_id"])]):
        with matplotlib.rc_context(kit.RC):
            fig, (ax_loss, ax_acc) = kit.new_figure(3.4, nrows=2, sharex=True)
            for label, method, s in kit.series_of(sub):
                c = curves[curves["run_id"].isin(s["run_id"]) & curves["run_id"].isin(done["run_id"])]
                for ax, col in ((ax_loss, "train_loss"), (ax_acc, "test_acc")):
                    stats = pd.to_numeric(c[col], errors="coerce").groupby(c["epoch"]).agg(["mean", "std"])
                    ax.plot(stats.index, stats["mean"], color=kit.color(method), label=label)
                    spread = stats["std"].fillna(0)
                    ax.fill_between(stats.index, stats["mean"] - spread, stats["mean"] + spread,
                                    color=kit.color(method), alpha=0.2, lw=0)
            ax_loss.set_ylabel("train loss")
            ax_acc.set_ylabel("test top-1 (%)")
            ax_acc.set_xlabel("epoch")
            ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax_loss.set_title(f"{task} · {arch} · {bits}")
            ax_acc.legend(frameon=False, ncols=2, loc="best")
            paths.append(kit.save(fig, Path(out_dir), f"curves__{_name(task, arch, bits)}"))
    return paths or kit.skip("training_curves: no done run with metrics.jsonl")


def all_figures(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: str | Path, selection: str = "top1_last",
                formats: tuple[str, ...] = ("png", "pdf")) -> dict[str, list[Path]]:
    """Every figure that has data, by kind (kinds without data are left out); PNG always, PDF if asked."""
    out_dir = Path(out_dir)
    token = kit.FORMATS.set(tuple(formats))
    try:
        return _all_figures(runs, curves, out_dir, selection)
    finally:
        kit.FORMATS.reset(token)


def _all_figures(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path,
                 selection: str) -> dict[str, list[Path]]:
    made = {
        "Accuracy vs bit width": plot_acc_vs_bits(runs, out_dir, selection),
        "Head / medium / tail accuracy": plot_hmt_bars(runs, out_dir),
        "Per-class accuracy vs training count": plot_per_class(runs, out_dir),
        "Source × target accuracy (domain shift)": plot_shift_heatmap(runs, out_dir),
        "ECE vs bit width": plot_ece_vs_bits(runs, out_dir),
        "Reliability diagrams": plot_reliability(runs, out_dir),
        "Training curves": plot_training_curves(runs, curves, out_dir),
    }
    return {kind: paths for kind, paths in made.items() if paths}
