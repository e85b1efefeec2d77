"""Reliability diagrams with the test samples per bin underneath: a bin's accuracy from a handful of samples
(often the low-confidence bins) jumps around, and the count panel shows which points to trust."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis import plotkit as kit
from analysis.figure_compare import name


def pooled_bins(reliability: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(mean confidence, accuracy, count) per bin, pooled over runs weighted by each run's bin counts."""
    rel = [r for r in reliability if r.get("bin_count")]
    if not rel:
        return None
    counts = [np.asarray(r["bin_count"], dtype=float) for r in rel]
    count = np.sum(counts, axis=0)
    conf = np.sum([kit.fraction(r["bin_confidence"]) * c for r, c in zip(rel, counts)], axis=0)
    acc = np.sum([kit.fraction(r["bin_accuracy"]) * c for r, c in zip(rel, counts)], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf / count, acc / count, count


def build_reliability(runs: pd.DataFrame) -> kit.Built:
    """Accuracy vs confidence per bin (pooled over seeds, count-weighted) over a log-scale count panel."""
    styles = kit.styles(runs)
    built = []
    for task, arch, bits, sub in kit.per_bits(runs, kit.has_list("reliability")):
        fig, (ax, ax_n) = kit.new_figure(3.5, nrows=2, sharex=True, height_ratios=[3, 1.3])
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=0.9, label="calibrated")
        seeds = kit.SeedCounts()
        for label, method, s in kit.series_of(sub):
            bins = pooled_bins(list(s["reliability"]))
            if bins is None:
                continue
            conf, acc, count = bins
            style = kit.labelled(styles[method], label)
            keep = count > 0
            # not clipped: a bin at accuracy 0 or 1 is data, and half a marker would hide its shape
            ax.plot(conf[keep], acc[keep], **style.line_kwargs(), markersize=3.2, clip_on=False)
            # equal-width bins (the trainer's ECE bins): counts as steps over the bin edges
            edges = np.linspace(0, 1, len(count) + 1)
            ax_n.stairs(np.where(keep, count, np.nan), edges, color=style.color, linestyle=style.linestyle,
                        lw=0.9)
            ax_n.plot(conf[keep], count[keep], marker=style.marker, color=style.color, linestyle="none",
                      markersize=2.6)
            seeds.add([len(s)])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("auto")
        ax.set_ylabel("accuracy")
        kit.set_title(ax, task, arch, bits)
        ax_n.set_yscale("log")
        ax_n.yaxis.set_major_locator(LogLocator(base=10, numticks=12))  # every decade, not every third
        ax_n.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 100, not 10^2
        ax_n.yaxis.set_minor_formatter(NullFormatter())
        ax_n.set_ylabel("samples per bin\n(all seeds)")
        ax_n.set_xlabel("confidence")
        kit.legend_outside(fig, [ax], seeds.note(pooled=True))
        built.append((f"reliability__{name(task, arch, bits)}", fig))
    return built
