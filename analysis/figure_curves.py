"""Training curves on one epoch axis: the FP run first, then each QAT run continuing from its FP parent's last
epoch (x = FP epochs + QAT epoch), with a vertical line where quantization-aware training starts.

A QAT run starts from its FP parent's weights, so plotting its epoch 1 on the FP's epoch 1 would compare a
fine-tuning step with a network that has barely started training.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from analysis import plotkit as kit
from analysis.figure_compare import name

log = logging.getLogger("analysis.figures")

PARENT_KEYS = ["task", "arch", "seed", "protocol"]
QAT_SHARE = 0.35  # of the x axis that the QAT epochs get at least


def fp_parent(runs: pd.DataFrame) -> dict[str, str]:
    """run id of each QAT run -> run id of its FP parent: ``init_from`` when that run is in the table, else
    the FP run of the same task, arch, seed and protocol."""
    fp = runs[runs["method"] == "fp"].sort_values("run_id")
    by_key = {tuple(r[k] for k in PARENT_KEYS): r["run_id"] for _, r in fp.iterrows()}
    known = set(fp["run_id"])
    parents = {}
    for _, r in runs[runs["method"] != "fp"].iterrows():
        parent = r.get("init_from")
        if parent not in known:  # older records lack init_from; a parent outside the table has no curve
            parent = by_key.get(tuple(r[k] for k in PARENT_KEYS))
        if parent is not None:
            parents[r["run_id"]] = parent
    return parents


def fp_epochs(runs: pd.DataFrame, curves: pd.DataFrame) -> dict[str, float]:
    """run id of each QAT run -> the epochs its FP parent trained: the parent's last logged epoch, else its
    recipe's epoch count. QAT runs without a known parent are left out (their curves start at epoch 1)."""
    last = pd.to_numeric(curves["epoch"], errors="coerce").groupby(curves["run_id"]).max().to_dict()
    recipe = dict(zip(runs["run_id"], pd.to_numeric(runs["epochs"], errors="coerce")))
    out = {}
    for run_id, parent in fp_parent(runs).items():
        epochs = last.get(parent, recipe.get(parent))
        if epochs is not None and np.isfinite(epochs):
            out[run_id] = float(epochs)
    return out


def widen_qat(axes: list[object], switch: float, lo: float, hi: float) -> bool:
    """Stretch the x axis after ``switch`` when the QAT epochs would get under QAT_SHARE of its width (a few
    QAT epochs after many FP ones would put every method's curve on top of the others); ``lo``..``hi`` is the
    epoch range drawn. Data keep their epoch values, only the scale changes, and the QAT epochs get ticks.
    False when nothing was stretched."""
    fp_span, qat_span = switch - lo, hi - switch
    if fp_span <= 0 or qat_span <= 0:
        return False
    k = QAT_SHARE * fp_span / ((1 - QAT_SHARE) * qat_span)
    if k <= 1:
        return False

    def forward(x: np.ndarray) -> np.ndarray:
        return np.where(x <= switch, x, switch + k * (x - switch))

    def inverse(y: np.ndarray) -> np.ndarray:
        return np.where(y <= switch, y, switch + (y - switch) / k)

    fp_ticks = [t for t in MaxNLocator(nbins=5, integer=True).tick_values(lo, switch) if lo <= t < switch - 1]
    step = max(1, int(np.ceil(qat_span / 6)))
    ticks = fp_ticks + [switch] + list(np.arange(switch + step, hi + 0.5, step))
    for ax in axes:
        ax.set_xscale("function", functions=(forward, inverse))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
    return True


def build_training_curves(runs: pd.DataFrame, curves: pd.DataFrame) -> kit.Built:
    """Train loss and test accuracy per epoch (metrics.jsonl), mean (± std where n ≥ 2), done runs only."""
    if curves is None or curves.empty:
        return []
    styles = kit.styles(runs)
    offsets = fp_epochs(runs, curves)
    built = []
    for task, arch, bits, sub in kit.per_bits(runs, lambda d: d[d["run_id"].isin(curves["run_id"])]):
        fig, (ax_loss, ax_acc) = kit.new_figure(3.9, nrows=2, sharex=True)
        seeds = kit.SeedCounts()
        switches, drawn = set(), []
        for label, method, s in kit.series_of(sub):
            c = curves[curves["run_id"].isin(s["run_id"])]
            x = pd.to_numeric(c["epoch"], errors="coerce")
            if method != "fp":
                shift = c["run_id"].map(offsets)
                if shift.isna().any():
                    log.info("training curves: %s has QAT runs without a known FP parent; they start at 1",
                             label)
                x = x + shift.fillna(0)
                switches.update(shift.dropna().unique())
            drawn += list(x.dropna())
            style = kit.labelled(styles[method], label)
            for ax, col in ((ax_loss, "train_loss"), (ax_acc, "test_acc")):
                stats = pd.to_numeric(c[col], errors="coerce").groupby(x).agg(["mean", "std", "count"])
                kit.plot_series(ax, stats.index, stats["mean"], stats["std"], stats["count"], style,
                                seeds if ax is ax_acc else None, markersize=3)
        for ax in (ax_loss, ax_acc):
            for at in sorted(switches):  # end of the FP parent's training = start of QAT
                ax.axvline(at, color="0.5", lw=0.8, ls="-", zorder=0)
        if switches:
            ax_loss.text(min(switches), 1.0, " QAT →", transform=ax_loss.get_xaxis_transform(), ha="left",
                         va="top", fontsize=6.5, color="0.35")
            ax_loss.text(min(switches), 1.0, "FP ", transform=ax_loss.get_xaxis_transform(), ha="right",
                         va="top", fontsize=6.5, color="0.35")
        ax_loss.set_ylabel("train loss")
        ax_acc.set_ylabel("test top-1 (%)")
        ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
        widened = bool(switches) and widen_qat([ax_loss, ax_acc], min(switches), min(drawn), max(drawn))
        ax_acc.set_xlabel("epoch: FP, then QAT" + (" (QAT span widened)" if widened else ""))
        kit.set_title(ax_loss, task, arch, bits)
        kit.legend_outside(fig, [ax_loss, ax_acc], seeds.note())
        built.append((f"curves__{name(task, arch, bits)}", fig))
    return built
