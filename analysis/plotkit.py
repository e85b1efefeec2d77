"""Shared plotting kit for ``analysis.figures``: paper-column style, file output, and run grouping.

Figures use ``matplotlib.figure.Figure`` rather than pyplot: no global figure state and no GUI backend,
so PNGs are rendered by Agg on any headless node and nothing leaks between figures.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.cells import done_runs, make_rows
from analysis.schema import parse_dataset
from benchmarks.run.labels import METHOD_ORDER, bits_sort_key

log = logging.getLogger("analysis.figures")

WIDTH = 3.4  # inches: one column of a two-column paper
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5,
      "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5,
      "savefig.bbox": "tight", "pdf.fonttype": 42, "axes.spines.top": False, "axes.spines.right": False}
_PALETTE = matplotlib.colormaps["tab10"].colors
# File formats save() writes; all_figures sets it. PDF embeds TrueType (Type 42) fonts, which publishers
# require but which costs ~0.5 s per figure, so quick reports and tests may ask for PNG only.
FORMATS: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png", "pdf"))


def color(method: str) -> tuple:
    """The same colour for a method in every figure (FP is dark grey)."""
    if method == "fp":
        return (0.3, 0.3, 0.3)
    idx = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER) + sum(map(ord, method))
    return _PALETTE[idx % len(_PALETTE)]


def new_figure(height: float, nrows: int = 1, sharex: bool = False) -> tuple[Figure, object]:
    """A column-wide figure and its axes (a single Axes when nrows == 1)."""
    fig = Figure(figsize=(WIDTH, height))
    return fig, fig.subplots(nrows, 1, sharex=sharex)


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    """PNG (200 dpi) always, PDF when FORMATS asks; returns the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=200)
    if "pdf" in FORMATS.get():
        fig.savefig(out_dir / f"{name}.pdf", metadata={"CreationDate": None})  # stable PDF bytes
    return png


def groups(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """(key tuple, rows) per group, sorted by key."""
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in runs.groupby(keys, sort=True)]


def legend_below(ax: object, n_entries: int) -> None:
    """Legend under the axes: inside, it would hide bars or reliability points."""
    ax.legend(frameon=False, ncols=min(4, max(1, n_entries)), loc="upper center",
              bbox_to_anchor=(0.5, -0.2))


def skip(what: str) -> None:
    """Log why a figure was not drawn; plot functions then return None."""
    log.info("figure skipped: %s", what)


def series_of(sub: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(label, method, runs) per table row (method, protocol, layer policy), in table order."""
    out = []
    for row in make_rows(sub, with_bits=False):
        mask = np.ones(len(sub), dtype=bool)
        for col, value in row.match.items():
            mask &= (sub[col] == value).to_numpy()
        out.append((row.label, row.match["method"], sub[mask]))
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


def fraction(values: list[float]) -> np.ndarray:
    """Reliability bins are recorded as fractions in [0, 1] (result.json contract)."""
    return np.asarray(values, dtype=float)


def short_domain(domain: str) -> str:
    """Heatmap tick label: drop ``-synth`` (the title says so) and shorten ``-lt-r100`` to ``-LT100``."""
    parsed = parse_dataset(domain)
    return parsed["base"] + (f"-LT{parsed['lt_ratio']:g}" if parsed["lt_ratio"] is not None else "")
