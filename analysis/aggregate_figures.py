"""The two across-task figures of the report: performance profiles and a critical-difference diagram.

Each method keeps its colour, marker and line style from ``analysis.style`` (Okabe–Ito, colour-blind safe, and
never colour alone); legends sit outside the data; the number of runs and tasks is printed on the figure. Both
are drawn on ``matplotlib.figure.Figure`` (no pyplot state) and written as PNG, plus PDF when asked.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from analysis import aggregate as agg
from analysis.scores import ScoreSet
from analysis.style import method_style

WIDTH = 3.4  # inches: one column of a two-column paper
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5, "savefig.bbox": "tight",
      "pdf.fonttype": 42, "axes.spines.top": False, "axes.spines.right": False}


def _save(fig: Figure, out_dir: Path, name: str, formats: tuple[str, ...]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=200)
    if "pdf" in formats:
        fig.savefig(out_dir / f"{name}.pdf", metadata={"CreationDate": None})  # stable PDF bytes
    return png


def _style(scores: ScoreSet, entrant: str) -> dict[str, object]:
    kwargs = method_style(scores.methods.get(entrant, entrant)).line_kwargs()
    kwargs["label"] = entrant if " [" in entrant else kwargs["label"]  # keep the setup the entrant names
    return kwargs


def profile_taus(scores: ScoreSet, points: int = 101) -> np.ndarray:
    """τ from 0.5 (or the lowest score) to 1.0 (or the highest): FP-normalised top-1 thresholds."""
    pooled = np.concatenate([s for per in scores.scores.values() for s in per])
    low, high = min(0.5, float(pooled.min())), max(1.0, float(pooled.max()))
    return np.linspace(math.floor(low * 100) / 100, math.ceil(high * 100) / 100, points)


def plot_performance_profiles(scores: ScoreSet, out_dir: Path, formats: tuple[str, ...] = ("png",),
                              reps: int = agg.PROFILE_REPS, seed: int = 0) -> Path | None:
    """Fraction of runs with FP-normalised top-1 > τ, per method, with a 95 % stratified-bootstrap band."""
    if not scores.tasks:
        return None
    taus = profile_taus(scores)
    bands = scores.runs_per_task() >= 2
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, 2.3))
        ax = fig.subplots()
        for entrant in scores.entrants:
            style = _style(scores, entrant)
            runs = sum(s.size for s in scores.scores[entrant])
            style["label"] = f"{style['label']} (n={runs})"
            ax.plot(taus, agg.performance_profile(scores.scores[entrant], taus), markevery=10, **style)
            if bands:
                low, high = agg.profile_interval(scores.scores[entrant], taus, reps, seed)
                ax.fill_between(taus, low, high, color=style["color"], alpha=0.15, lw=0)
        ax.axvline(1.0, color="0.6", ls=":", lw=0.8)  # as good as the FP parent
        ax.set_xlabel("τ (top-1 ÷ FP parent's top-1)")
        ax.set_ylabel("fraction of runs > τ")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"Performance profiles · {len(scores.tasks)} task(s)"
                     + ("" if bands else " · no bands: 1 run per task"))
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _save(fig, Path(out_dir), "aggregate__performance_profiles", formats)


def plot_cd_diagram(scores: ScoreSet, mean_ranks: dict[str, float], cd: float, out_dir: Path,
                    formats: tuple[str, ...] = ("png",)) -> Path | None:
    """Demšar's critical-difference diagram: mean ranks on one axis (1 = best, left), methods joined by a bar
    when their mean ranks differ by less than the Nemenyi CD."""
    if not mean_ranks or math.isnan(cd):
        return None
    names = sorted(mean_ranks, key=lambda e: (mean_ranks[e], e))
    k = len(names)
    ranks = [mean_ranks[e] for e in names]
    cliques = agg.rank_cliques(ranks, cd)
    half = math.ceil(k / 2)
    top = 0.25 + 0.15 * len(cliques)  # label rows start below the clique bars
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, 0.8 + 0.3 * (top + 0.35 * half)))
        ax = fig.subplots()
        ax.set_xlim(0.9, k + 0.1)  # labels sit outside the axis; the tight bounding box keeps them
        ax.set_ylim(-(top + 0.35 * half), 1.5)
        ax.axis("off")
        ax.plot([1, k], [0, 0], color="0.2", lw=0.8)
        for r in range(1, k + 1):
            ax.plot([r, r], [0, 0.12], color="0.2", lw=0.8)
            ax.text(r, 0.2, str(r), ha="center", va="bottom", fontsize=7)
        ax.plot([1, 1 + cd], [1.0, 1.0], color="0.2", lw=1.2)  # the CD as a length on the rank axis
        ax.text(1 + cd / 2, 1.1, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7)
        for j, group in enumerate(cliques):
            y = -0.12 - 0.15 * j
            ax.plot([ranks[group[0]] - 0.03, ranks[group[-1]] + 0.03], [y, y], color="0.1", lw=2.2,
                    solid_capstyle="round")
        for i, (name, rank) in enumerate(zip(names, ranks)):
            style = _style(scores, name)
            left = i < half
            y = -(top + 0.35 * (i if left else k - 1 - i))
            x_end = 0.9 if left else k + 0.1
            ax.plot([rank, rank, x_end], [0, y, y], color=style["color"], lw=0.8)
            ax.plot([rank], [0], marker=style["marker"], color=style["color"], ms=4)
            ax.text(x_end - 0.05 if left else x_end + 0.05, y, f"{style['label']} ({rank:.2f})",
                    ha="right" if left else "left", va="center", fontsize=6.5)
        ax.set_title(f"Mean rank over {len(scores.tasks)} tasks (1 = best), Friedman + Nemenyi, α = 0.05",
                     fontsize=7)
        return _save(fig, Path(out_dir), "aggregate__critical_difference", formats)


def aggregate_figures(scores: ScoreSet, mean_ranks: dict[str, float], cd: float, out_dir: str | Path,
                      formats: tuple[str, ...] = ("png", "pdf"), seed: int = 0) -> dict[str, list[Path]]:
    """Both figures that have data, by kind (PNG paths)."""
    made = {"Performance profiles": plot_performance_profiles(scores, Path(out_dir), formats, seed=seed),
            "Critical-difference diagram": plot_cd_diagram(scores, mean_ranks, cd, Path(out_dir), formats)}
    return {kind: [path] for kind, path in made.items() if path is not None}
