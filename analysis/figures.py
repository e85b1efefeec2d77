"""Figures for a paper column (3.4 in wide, 8 pt fonts), each written as PNG and PDF.

Every ``plot_*`` function takes the tidy runs table (done runs are used, never partial ones), writes one
file per (task, arch[, W/A]) and returns the PNG paths, or None (with a log line) when the data it needs
is absent, so a report on a partial sweep still renders what it can. The drawing lives in the ``build_*``
functions of ``figure_compare``, ``figure_reliability`` and ``figure_curves``, which return the figures
unsaved (tests inspect their artists).

What every figure shares: each method keeps one colour-blind-safe colour, marker and line style
(``analysis.style``) and its display name; the legend sits outside the axes; a mean of n ≥ 2 runs gets a
± sample-std error bar and a single run a plain marker, and the legend title says which.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import plotkit as kit
from analysis.figure_compare import build_hmt_bars, build_metric_vs_bits, build_per_class, build_shift_heatmap
from analysis.figure_curves import build_training_curves
from analysis.figure_reliability import build_reliability


def _saved(build: object, out_dir: Path | str, what: str, *args: object) -> list[Path] | None:
    import matplotlib

    with matplotlib.rc_context(kit.RC):  # rc settings apply to artists as they are created
        built = build(*args)
    return kit.save_all(built, out_dir, what)


def plot_acc_vs_bits(runs: pd.DataFrame, out_dir: Path, selection: str = "top1_last") -> list[Path] | None:
    """Top-1 vs W/A per method, mean with ± std bars where n ≥ 2; FP as a reference line."""
    return _saved(build_metric_vs_bits, out_dir, f"acc_vs_bits: no quantized runs with {selection}",
                  runs, selection, f"top-1 (%), {selection}", "acc_vs_bits")


def plot_ece_vs_bits(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """ECE (15 bins, %) vs W/A per method, with ± std bars where n ≥ 2."""
    return _saved(build_metric_vs_bits, out_dir, "ece_vs_bits: no quantized runs with ece",
                  runs, "ece", "ECE (%)", "ece_vs_bits", 100.0)


def plot_hmt_bars(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Head / medium / tail accuracy per method (FP first), one figure per (task, arch, W/A)."""
    return _saved(build_hmt_bars, out_dir, "hmt: no run with head/medium/tail accuracy", runs)


def plot_per_class(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Per-class accuracy against the class's training-image count (log x), mean over seeds."""
    return _saved(build_per_class, out_dir, "per_class: no run with per-class accuracy and class counts",
                  runs)


def plot_reliability(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Reliability diagram (bins pooled over seeds, count-weighted) over a panel of samples per bin."""
    return _saved(build_reliability, out_dir, "reliability: no run with reliability bins", runs)


def plot_shift_heatmap(runs: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Accuracy of each (method, source) row on each evaluated domain, per (arch, W/A), FP rows first."""
    return _saved(build_shift_heatmap, out_dir, "shift_heatmap: no domain-shift run with per-domain accuracy",
                  runs)


def plot_training_curves(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Train loss and test accuracy per epoch (metrics.jsonl); QAT epochs continue after the FP parent's."""
    return _saved(build_training_curves, out_dir, "training_curves: no done run with metrics.jsonl",
                  runs, curves)


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
