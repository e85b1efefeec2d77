"""Figures that compare methods on one number: a metric vs W/A, head/medium/tail bars, per-class accuracy vs
class size, and the source × target heatmap. Each ``build_*`` returns (file stem, figure) pairs and draws
nothing to disk; ``analysis.figures`` saves them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from analysis import plotkit as kit
from analysis.cells import done_runs
from analysis.tables import slug
from benchmarks.run.labels import bits_sort_key

DODGE = 0.07  # x shift between methods at one W/A, so their error bars do not sit on top of each other


def name(*parts: str) -> str:
    """File stem part: ``task__arch__bits`` in file-name-safe form."""
    return "__".join(slug(p) for p in parts)


def build_metric_vs_bits(runs: pd.DataFrame, metric: str, ylabel: str, prefix: str,
                         scale: float = 1.0) -> kit.Built:
    """``metric`` vs W/A per method (mean, ± std bars where n ≥ 2); FP as a reference line with markers."""
    done = done_runs(runs)
    done = done[kit.numeric(done[metric]).notna()]
    styles = kit.styles(runs)
    built = []
    for (task, arch), sub in kit.groups(done, ["task", "arch"]):
        quant = sub[sub["method"] != "fp"]
        if quant.empty:
            continue
        bits = sorted(quant["bits_label"].unique(), key=bits_sort_key)
        x = np.arange(len(bits), dtype=float)
        fig, ax = kit.new_figure(2.6)
        counts = kit.SeedCounts()
        series = kit.series_of(sub)
        quantized = [label for label, method, _ in series if method != "fp"]
        for label, method, s in series:
            values = kit.numeric(s[metric]) * scale
            style = kit.labelled(styles[method], label)
            # FP has no W/A of its own: a level across the plot (markers at its ends), spread as a band
            if method == "fp":
                ax.axhline(values.mean(), **style.line_kwargs(), zorder=1, clip_on=False)
                if len(values) >= 2:
                    ax.axhspan(values.mean() - values.std(), values.mean() + values.std(), color=style.color,
                               alpha=0.08, lw=0)
                counts.add([len(values)])
                continue
            stats = values.groupby(s["bits_label"]).agg(["mean", "std", "count"]).reindex(bits)
            offset = (quantized.index(label) - (len(quantized) - 1) / 2) * DODGE
            kit.plot_series(ax, x + offset, stats["mean"], stats["std"], stats["count"], style, counts)
        ax.set_xticks(x, bits)
        ax.set_xlim(-0.5, len(bits) - 0.5)
        ax.set_xlabel("weight / activation bits")
        ax.set_ylabel(ylabel)
        kit.set_title(ax, task, arch)
        kit.legend_outside(fig, [ax], counts.note())
        built.append((f"{prefix}__{name(task, arch)}", fig))
    return built


def build_hmt_bars(runs: pd.DataFrame) -> kit.Built:
    """Head / medium / tail accuracy per method (FP first), one figure per (task, arch, W/A)."""
    parts = [("head_acc", "Head"), ("medium_acc", "Medium"), ("tail_acc", "Tail")]
    styles = kit.styles(runs)

    def need(d: pd.DataFrame) -> pd.DataFrame:
        # a balanced set has only head classes: nothing to compare, so only runs with a medium or tail
        split = kit.numeric(d["medium_acc"]).notna() | kit.numeric(d["tail_acc"]).notna()
        return d[split.astype(bool)]

    built = []
    for task, arch, bits, sub in kit.per_bits(runs, need):
        series = kit.series_of(sub)
        width = 0.84 / max(len(series), 1)
        fig, ax = kit.new_figure(2.5)
        counts = kit.SeedCounts()
        handles, labels, tops = [], [], []
        for i, (label, method, s) in enumerate(series):
            style = styles[method]
            vals = [kit.numeric(s[c]).dropna() for c, _ in parts]
            mean = np.array([v.mean() if len(v) else np.nan for v in vals])
            std = np.array([v.std() for v in vals])
            n = np.array([len(v) for v in vals])
            x = np.arange(len(parts)) + (i - (len(series) - 1) / 2) * width
            bar = ax.bar(x, mean, width, color=style.color, edgecolor="black", linewidth=0.3)
            bars = (n >= 2) & np.isfinite(mean)
            if bars.any():
                ax.errorbar(x[bars], mean[bars], yerr=std[bars], ecolor="black", **kit.ERRORBAR_KW)
            tops.append((x, mean + np.where(bars, std, 0.0), style))
            counts.add(n)
            handles.append((bar.patches[0], Line2D([], [], marker=style.marker, color=style.color,
                                                   markeredgecolor="black", markeredgewidth=0.4,
                                                   linestyle="none")))
            labels.append(label)
        # the method's marker just above each bar (and its error bar), on white: bars of similar hue or
        # grey level stay apart, and a black FP marker is not lost on a black bar
        pad = 0.035 * ax.get_ylim()[1]
        for x, top, style in tops:
            ax.plot(x, top + pad, marker=style.marker, color=style.color, markeredgecolor="black",
                    markeredgewidth=0.4, markersize=3.4, linestyle="none", clip_on=False)
        ax.set_xticks(np.arange(len(parts)), [p for _, p in parts])
        ax.set_ylabel("accuracy (%)")
        kit.set_title(ax, task, arch, bits)
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), frameon=False,
                   title=counts.note() or None, handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})
        built.append((f"hmt__{name(task, arch, bits)}", fig))
    return built


def build_per_class(runs: pd.DataFrame) -> kit.Built:
    """Per-class accuracy against the class's training-image count (log x), mean (± std where n ≥ 2)."""
    styles = kit.styles(runs)

    def need(d: pd.DataFrame) -> pd.DataFrame:
        d = kit.has_list("train_class_counts")(kit.has_list("per_class_acc")(d))
        imbalanced = d["train_class_counts"].map(lambda c: max(c) > 1.5 * max(min(c), 1))
        return d[imbalanced.astype(bool)]  # balanced counts would put every class at one x

    built = []
    for task, arch, bits, sub in kit.per_bits(runs, need):
        counts = np.asarray(sub["train_class_counts"].iloc[0], dtype=float)
        order = np.argsort(counts)
        fig, ax = kit.new_figure(2.7)
        seeds = kit.SeedCounts()
        for label, method, s in kit.series_of(sub):
            accs = np.asarray([a for a in s["per_class_acc"] if len(a) == len(counts)], dtype=float)
            if not len(accs):
                continue
            std = accs.std(axis=0, ddof=1) if len(accs) > 1 else np.full(len(counts), np.nan)
            kit.plot_series(ax, counts[order], accs.mean(axis=0)[order], std[order],
                            np.full(len(counts), len(accs)), kit.labelled(styles[method], label), seeds)
        ax.set_xscale("log")
        borders = sub[["hmt_tail_max", "hmt_head_min"]].dropna()
        if not borders.empty:
            tail_max, head_min = (float(v) for v in borders.iloc[0])
            for threshold in (tail_max, head_min):
                ax.axvline(threshold, color="0.6", ls=":", lw=0.8, zorder=0)
            # name the three regions just above the plot area, where no data can be
            lo, hi = ax.get_xlim()
            for text, left, right in (("tail", lo, tail_max), ("medium", tail_max, head_min),
                                      ("head", head_min, hi)):
                middle = np.sqrt(max(left, lo) * min(right, hi))  # geometric: the x axis is logarithmic
                ax.text(middle, 1.01, text, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                        fontsize=6, color="0.35")
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_ylabel("class accuracy (%)")
        kit.set_title(ax, task, arch, bits, pad=10)
        kit.legend_outside(fig, [ax], seeds.note())
        built.append((f"per_class__{name(task, arch, bits)}", fig))
    return built


def build_shift_heatmap(runs: pd.DataFrame) -> kit.Built:
    """Accuracy of each (method, source) row on each evaluated domain (columns), per (arch, W/A), with the FP
    rows first as the reference the quantized rows are read against.

    One heatmap with method-major rows rather than a panel per method: at column width, panels would
    leave no room for the domain names.
    """
    import seaborn as sns

    done = kit.has_list("per_domain_acc")(done_runs(runs))
    done = done[done["target"].notna()]
    built = []
    for (arch,), sub in kit.groups(done, ["arch"]):
        fp = sub[sub["method"] == "fp"]
        for bits in sorted(sub.loc[sub["method"] != "fp", "bits_label"].unique(), key=bits_sort_key):
            cell = pd.concat([fp, sub[(sub["bits_label"] == bits) & (sub["method"] != "fp")]])
            built.append((f"shift_heatmap__{name(arch, bits)}", _heatmap(sns, cell, arch, bits)))
    return built


def _heatmap(sns: object, sub: pd.DataFrame, arch: str, bits: str) -> object:
    short = kit.short_domain
    one_source = sub["dataset"].nunique() == 1
    long = [(label if one_source else f"{label} | {short(src)}", short(dom), acc, method == "fp")
            for label, method, s in kit.series_of(sub)
            for src, pda in zip(s["dataset"], s["per_domain_acc"]) for dom, acc in pda.items()]
    frame = pd.DataFrame(long, columns=["row", "domain", "acc", "fp"])
    grid = frame.pivot_table(index="row", columns="domain", values="acc", aggfunc="mean", sort=False)
    grid = grid[sorted(grid.columns)]
    n_fp = frame.loc[frame["fp"], "row"].nunique()
    synth = " (synthetic data)" if sub["synthetic"].astype(bool).any() else ""
    fig, ax = kit.new_figure(1.0 + 0.22 * len(grid))
    # viridis: ordered in lightness, so it reads the same under every colour-vision deficiency
    sns.heatmap(grid, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".1f",
                annot_kws={"fontsize": 6.5}, cbar_kws={"label": "accuracy (%)"})
    if 0 < n_fp < len(grid):
        ax.axhline(n_fp, color="white", lw=2.5)  # FP reference rows above, quantized rows below
    ax.set_xlabel("evaluated domain")
    ax.set_ylabel("method" + (f" (source: {short(sub['dataset'].iloc[0])})" if one_source else " | source"))
    crowded = sum(len(c) for c in grid.columns) > 24  # domain names would run into each other
    ax.tick_params(axis="x", rotation=25 if crowded else 0)
    if crowded:
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"{arch} · {bits}{synth}")
    return fig
