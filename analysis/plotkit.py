"""Shared plotting kit for the figure modules: paper-column style, legends off the data, error bars only where
there is a spread to show, file output, and run grouping.

Figures use ``matplotlib.figure.Figure`` rather than pyplot: no global figure state and no GUI backend,
so PNGs are rendered by Agg on any headless node and nothing leaks between figures.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from analysis.cells import done_runs, make_rows
from analysis.schema import parse_dataset
from analysis.style import MethodStyle, styles_for
from benchmarks.run.labels import bits_sort_key, method_display

log = logging.getLogger("analysis.figures")

WIDTH = 3.4  # inches: one column of a two-column paper
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5,
      "legend.title_fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.1,
      "lines.markersize": 4, "savefig.bbox": "tight", "savefig.pad_inches": 0.03, "pdf.fonttype": 42,
      "axes.spines.top": False, "axes.spines.right": False}
# File formats save() writes; all_figures sets it. PDF embeds TrueType (Type 42) fonts, which publishers
# require but which costs ~0.5 s per figure, so quick reports and tests may ask for PNG only.
FORMATS: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png", "pdf"))
ERRORBAR_KW = {"fmt": "none", "elinewidth": 0.7, "capsize": 1.8, "capthick": 0.7, "label": "_nolegend_"}

Built = list[tuple[str, Figure]]  # (file stem, figure) pairs a builder returns; plot_* functions save them


def new_figure(height: float, nrows: int = 1, sharex: bool = False,
               height_ratios: list[float] | None = None) -> tuple[Figure, object]:
    """A column-wide figure and its axes (a single Axes when nrows == 1).

    Constrained layout, so a legend placed "outside" gets room of its own instead of covering the data.
    """
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    kw = {"height_ratios": height_ratios} if height_ratios else None
    return fig, fig.subplots(nrows, 1, sharex=sharex, gridspec_kw=kw)


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    """PNG (200 dpi) always, PDF when FORMATS asks; returns the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    with matplotlib.rc_context(RC):  # savefig.* settings are read at save time
        fig.savefig(png, dpi=200)
        if "pdf" in FORMATS.get():
            fig.savefig(out_dir / f"{name}.pdf", metadata={"CreationDate": None})  # stable PDF bytes
    return png


def save_all(built: Built, out_dir: Path | str, what: str) -> list[Path] | None:
    """Save every built figure; None (with a log line saying ``what`` was missing) when there is none."""
    return [save(fig, Path(out_dir), stem) for stem, fig in built] or skip(what)


def styles(runs: pd.DataFrame) -> dict[str, MethodStyle]:
    """One style per method of the whole runs table: a method looks the same in every figure of a report."""
    return styles_for(runs["method"].unique() if "method" in runs else [])


def labelled(style: MethodStyle, label: str) -> MethodStyle:
    return dataclasses.replace(style, label=label)


class SeedCounts:
    """The n behind each plotted mean, collected while drawing, for the legend title that says what the
    error bars are."""

    def __init__(self) -> None:
        self.ns: list[int] = []

    def add(self, n: Iterable[float]) -> None:
        self.ns += [int(v) for v in n if np.isfinite(v) and v > 0]

    def note(self, pooled: bool = False) -> str:
        """Short enough for a legend title at column width (a wider one would widen the saved figure)."""
        if not self.ns:
            return ""
        lo, hi = min(self.ns), max(self.ns)
        n = f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"
        if pooled:
            return f"bins pooled over seeds ({n})"
        if hi < 2:
            return "one seed per point (n = 1): no error bars"
        if lo >= 2:
            return f"mean ± sample std over seeds ({n})"
        return f"mean ± sample std over seeds ({n});\nno error bar where n = 1"


def plot_series(ax: object, x: np.ndarray, mean: np.ndarray, std: np.ndarray, n: np.ndarray,
                style: MethodStyle, counts: SeedCounts | None = None, **line_kw: object) -> None:
    """Line and markers through every mean; an error bar (± std) only at points with n ≥ 2, so a single run
    is a plain marker instead of a zero-height bar that would read as "no spread"."""
    x, mean, std, n = (np.asarray(v, dtype=float) for v in (x, mean, std, n))
    ax.plot(x, mean, **{**style.line_kwargs(), **line_kw})
    bars = (n >= 2) & np.isfinite(std) & np.isfinite(mean)
    if bars.any():
        ax.errorbar(x[bars], mean[bars], yerr=std[bars], ecolor=style.color, **ERRORBAR_KW)
    if counts is not None:
        counts.add(n[np.isfinite(mean)])


def legend_outside(fig: Figure, axes: Iterable[object], title: str = "", ncols: int = 4) -> Legend | None:
    """One legend for the figure, below the axes in space the layout reserves for it: inside, it would hide
    bars, curves or reliability points."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not handles:
        return None
    return fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)),
                      frameon=False, title=title or None, handlelength=2.4, columnspacing=1.0)


TITLE_CHARS = 46  # about what fits over a column-wide axes at 8 pt


def set_title(ax: object, task: str, *rest: str, **kw: object) -> None:
    """``task · arch · W/A`` as the axes title, on two lines when one would be wider than the column (a long
    title widens the saved figure)."""
    one = " · ".join((task, *rest))
    ax.set_title(one if len(one) <= TITLE_CHARS else f"{task}\n{' · '.join(rest)}", **kw)


def skip(what: str) -> None:
    """Log why a figure was not drawn; plot functions then return None."""
    log.info("figure skipped: %s", what)


def groups(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """(key tuple, rows) per group, sorted by key."""
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in runs.groupby(keys, sort=True)]


def series_of(sub: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(label, method, runs) per table row (method, protocol, layer policy), in table order; the label starts
    with the method's display name (``EmaQ-LT``, not ``emaq-lt``)."""
    out = []
    for row in make_rows(sub, with_bits=False):
        method = row.match["method"]
        mask = np.ones(len(sub), dtype=bool)
        for col, value in row.match.items():
            mask &= (sub[col] == value).to_numpy()
        out.append((method_display(method) + row.label[len(method):], method, sub[mask]))
    return out


def per_bits(runs: pd.DataFrame, needed: Callable[[pd.DataFrame], pd.DataFrame]
             ) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """(task, arch, W/A, runs incl. the FP reference) for each quantized W/A with the needed data."""
    done = needed(done_runs(runs))
    for (task, arch), sub in groups(done, ["task", "arch"]):
        fp = sub[sub["method"] == "fp"]
        for bits in sorted(sub.loc[sub["method"] != "fp", "bits_label"].unique(), key=bits_sort_key):
            quant = sub[(sub["bits_label"] == bits) & (sub["method"] != "fp")]
            yield task, arch, bits, pd.concat([fp, quant])


def has_list(col: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A filter keeping the rows whose ``col`` is a non-empty list or dict."""
    # astype(bool): on an empty frame the mask would be object-typed and select columns instead of rows
    return lambda d: d[d[col].map(lambda v: isinstance(v, (list, dict)) and len(v) > 0).astype(bool)]


def numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def fraction(values: list[float]) -> np.ndarray:
    """Reliability bins are recorded as fractions in [0, 1] (result.json contract)."""
    return np.asarray(values, dtype=float)


def short_domain(domain: str) -> str:
    """Heatmap tick label: drop ``-synth`` (the title says so) and shorten ``-lt-r100`` to ``-LT100``."""
    parsed = parse_dataset(domain)
    return parsed["base"] + (f"-LT{parsed['lt_ratio']:g}" if parsed["lt_ratio"] is not None else "")
