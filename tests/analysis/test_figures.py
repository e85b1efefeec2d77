"""Figures for papers: method styles that survive colour-vision deficiencies, legends off the data, error bars
only where there is a spread (n >= 2), QAT epochs after the FP epochs, counts under reliability diagrams and
the FP rows on shift heatmaps. Figures are built unsaved and their matplotlib artists inspected."""
from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from analysis import plotkit as kit
from analysis.collect import collect_runs, read_curves
from analysis.figure_compare import build_hmt_bars, build_metric_vs_bits, build_per_class, build_shift_heatmap
from analysis.figure_curves import build_training_curves, fp_epochs, widen_qat
from analysis.figure_reliability import build_reliability
from analysis.style import SPARE_COLORS, SPARE_DASHES, SPARE_MARKERS, STYLED_METHODS, method_style, styles_for
from benchmarks.run.labels import METHOD_DISPLAY, METHOD_ORDER
from tests.analysis.fixtures import make_sweep

# ------------------------------------------------------------------------------ colour-vision simulation
# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear-light sRGB.
MACHADO = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "normal": np.eye(3),
}
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# CIELAB ΔE*ab (CIE76) every pair of built-in method colours must keep. ~2.3 is a just-noticeable difference;
# thin lines and small markers need far more. Okabe–Ito keeps ≥ 17.9 under deuteranopia (AlignQ–ClimbQ)
# and ≥ 20.7 under protanopia, while tab10 (the old palette) falls to 7.3 (its green and red).
MIN_DELTA_E = 15.0
# A newly registered method's spare colour against every built-in one: lower, since no 14 hues stay 15 apart
# under deuteranopia, but its marker and dash differ too.
MIN_DELTA_E_SPARE = 12.0


def linear_rgb(hex_color: str) -> np.ndarray:
    srgb = np.array(matplotlib.colors.to_rgb(hex_color))
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def lab(linear: np.ndarray) -> np.ndarray:
    t = SRGB_TO_XYZ @ np.clip(linear, 0.0, 1.0) / D65_WHITE
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def seen_as(hex_color: str, vision: str) -> np.ndarray:
    """CIELAB of ``hex_color`` as a viewer with ``vision`` sees it."""
    return lab(MACHADO[vision] @ linear_rgb(hex_color))


def delta_e(a: str, b: str, vision: str) -> float:
    return float(np.linalg.norm(seen_as(a, vision) - seen_as(b, vision)))


def closest_pair(colors: dict[str, str], vision: str) -> tuple[float, str, str]:
    return min((delta_e(colors[a], colors[b], vision), a, b) for a, b in itertools.combinations(colors, 2))


def test_simulation_sanity():
    """White stays white (the matrices' rows sum to 1); tab10's red and green collapse under deuteranopia."""
    assert np.allclose(seen_as("#FFFFFF", "deuteranopia"), [100, 0, 0], atol=0.1)
    assert delta_e("#FF0000", "#00FF00", "normal") > 100
    assert delta_e("#D62728", "#2CA02C", "deuteranopia") < 10  # tab10 red vs green


@pytest.mark.parametrize("vision", ["deuteranopia", "protanopia", "normal"])
def test_builtin_method_colours_stay_apart(vision):
    colors = {m: method_style(m).color for m in STYLED_METHODS}
    dist, a, b = closest_pair(colors, vision)
    assert dist >= MIN_DELTA_E, f"{a} and {b} are only ΔE {dist:.1f} apart under {vision}"


def test_threshold_rejects_the_old_tab10_palette():
    tab10 = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    old = dict(zip(STYLED_METHODS[1:], tab10))  # as tab10 coloured lsq … emaq-lt
    assert closest_pair(old, "deuteranopia")[0] < MIN_DELTA_E


@pytest.mark.parametrize("vision", ["deuteranopia", "normal"])
def test_spare_colours_stay_apart_from_builtins_and_each_other(vision):
    builtin = [method_style(m).color for m in STYLED_METHODS]
    for spare in SPARE_COLORS:
        closest = min(delta_e(spare, b, vision) for b in builtin)
        assert closest >= MIN_DELTA_E_SPARE, f"{spare} within ΔE {closest:.1f} of a built-in ({vision})"
    assert closest_pair(dict(enumerate(SPARE_COLORS)), vision)[0] >= MIN_DELTA_E


def test_markers_and_line_styles_pairwise_distinct():
    """Built-in and spare entries together: a method never depends on colour alone."""
    styles = [method_style(m) for m in STYLED_METHODS]
    markers = [s.marker for s in styles] + list(SPARE_MARKERS)
    dashes = [str(s.linestyle) for s in styles] + [str(d) for d in SPARE_DASHES]
    assert len(set(markers)) == len(markers)
    assert len(set(dashes)) == len(dashes)
    assert len(SPARE_COLORS) == len(SPARE_MARKERS) == len(SPARE_DASHES)


def test_every_builtin_style_is_distinct_as_a_whole():
    triples = [(s.color, s.marker, str(s.linestyle)) for s in map(method_style, STYLED_METHODS)]
    assert len(set(triples)) == len(triples)
    assert [method_style(m).label for m in METHOD_ORDER] == [METHOD_DISPLAY[m] for m in METHOD_ORDER]


def test_new_methods_get_distinct_spare_styles():
    new = [f"newq{i}" for i in range(len(SPARE_COLORS))]
    styles = styles_for(list(STYLED_METHODS) + new)
    builtin_colors = {method_style(m).color for m in STYLED_METHODS}
    colors = [styles[m].color for m in new]
    assert len(set(colors)) == len(colors) and not set(colors) & builtin_colors
    assert len({styles[m].marker for m in new}) == len(new)
    assert styles_for(["newq3"])["newq3"] == method_style("newq3")  # alone: the hashed slot
    assert all(styles[m] == method_style(m) for m in STYLED_METHODS)
    assert styles_for(new) == styles_for(reversed(new))  # order of appearance does not matter


# ------------------------------------------------------------------------------------- built figures
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    runs, _ = collect_runs(root)
    return runs, read_curves(runs["source"].tolist())


def build_all(runs: pd.DataFrame, curves: pd.DataFrame) -> dict[str, kit.Built]:
    with matplotlib.rc_context(kit.RC):
        return {
            "acc_vs_bits": build_metric_vs_bits(runs, "top1_last", "top-1 (%)", "acc_vs_bits"),
            "ece_vs_bits": build_metric_vs_bits(runs, "ece", "ECE (%)", "ece_vs_bits", 100.0),
            "hmt": build_hmt_bars(runs),
            "per_class": build_per_class(runs),
            "reliability": build_reliability(runs),
            "shift_heatmap": build_shift_heatmap(runs),
            "curves": build_training_curves(runs, curves),
        }


@pytest.fixture(scope="module")
def built(sweep):
    made = build_all(*sweep)
    for figures in made.values():
        for _, fig in figures:
            fig.draw_without_rendering()  # lays out constrained layout and the legends
    return made


@pytest.fixture(scope="module")
def built_one_seed(sweep):
    runs, curves = sweep
    return build_all(runs[runs["seed"] == 0], curves)


def legend_of(fig: Figure):
    return fig.legends[0] if fig.legends else None


def test_every_kind_is_built(built):
    assert {kind: len(figs) for kind, figs in built.items()} == {
        "acc_vs_bits": 3, "ece_vs_bits": 3, "hmt": 2, "per_class": 2, "reliability": 4, "shift_heatmap": 2,
        "curves": 4}


def test_legends_sit_outside_every_axes_and_inside_the_column(built):
    for kind, figures in built.items():
        for stem, fig in figures:
            legend = legend_of(fig)
            if kind == "shift_heatmap":
                assert legend is None and not any(ax.get_legend() for ax in fig.axes)  # a colour bar instead
                continue
            assert legend is not None, stem
            box = legend.get_window_extent()
            for ax in fig.axes:
                assert ax.get_legend() is None, stem
                assert not box.overlaps(ax.get_window_extent()), f"{stem}: legend overlaps the axes"
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1, f"{stem}: legend clipped"
            width_in = fig.get_tightbbox().width
            assert width_in <= kit.WIDTH + 0.05, f"{stem}: {width_in:.2f} in wide, wider than a column"


def test_legends_show_display_names_in_method_styles(built, sweep):
    runs, _ = sweep
    styles = kit.styles(runs)
    by_label = {s.label: s for s in styles.values()}
    for kind in ("acc_vs_bits", "per_class", "reliability", "curves"):
        for stem, fig in built[kind]:
            labels = [t.get_text() for t in legend_of(fig).get_texts()]
            assert {"FP", "LSQ"} <= set(labels) <= {"FP", "LSQ", "AlignQ", "calibrated"}, stem
            for ax in fig.axes:
                for line in ax.get_lines():
                    style = by_label.get(line.get_label())
                    if style is None:
                        continue
                    assert matplotlib.colors.to_hex(line.get_color()) == style.color.lower(), stem
                    assert line.get_marker() == style.marker, stem
    hmt_labels = [t.get_text() for _, fig in built["hmt"] for t in legend_of(fig).get_texts()]
    assert set(hmt_labels) == {"FP", "LSQ", "AlignQ"}


def errorbar_x(fig: Figure) -> list[float]:
    """x of every drawn error bar in the figure."""
    xs = []
    for ax in fig.axes:
        for container in ax.containers:
            if isinstance(container, ErrorbarContainer):
                for collection in container.lines[2]:
                    xs += [seg[0][0] for seg in collection.get_segments()]
    return xs


def test_single_seed_figures_draw_no_error_bars(built_one_seed):
    for kind, figures in built_one_seed.items():
        for stem, fig in figures:
            assert errorbar_x(fig) == [], f"{stem}: error bar at n = 1"
            if kind not in ("shift_heatmap", "reliability"):
                assert "n = 1" in legend_of(fig).get_title().get_text(), stem


def test_error_bars_only_where_n_is_at_least_two(built):
    """The long-tailed task: LSQ has one finished W2/A2 run (seed 1 failed) and three W4/A4 runs."""
    figures = dict(built["acc_vs_bits"])
    fig = figures["acc_vs_bits__syndigits-synth-lt-r100-to-mnistm-synth__dann-digits"]
    ax = fig.axes[0]
    lsq = next(line for line in ax.get_lines() if line.get_label() == "LSQ")
    x_w2, x_w4 = lsq.get_xdata()
    bars = errorbar_x(fig)
    assert not any(np.isclose(bars, x_w2)) and any(np.isclose(bars, x_w4))
    title = legend_of(fig).get_title().get_text()
    assert "± sample std" in title and "n = 1–3" in title and "no error bar where n = 1" in title


def test_qat_curves_start_after_the_fp_epochs(built, sweep):
    runs, curves = sweep
    fp_last = 3  # the fixture's FP runs log epochs 1..3
    for stem, fig in built["curves"]:
        for ax in fig.axes:
            lines = {line.get_label(): line for line in ax.get_lines()}
            assert min(lines["FP"].get_xdata()) == 1 and max(lines["FP"].get_xdata()) == fp_last
            for label in set(lines) & {"LSQ", "AlignQ"}:
                x = lines[label].get_xdata()
                assert min(x) == fp_last + 1, f"{stem}: {label} starts at {min(x)}"
            switch = [line for line in ax.get_lines() if line.get_label().startswith("_")
                      and list(line.get_xdata()) == [fp_last, fp_last]]
            assert switch, f"{stem}: no vertical line at the FP → QAT switch"
    assert set(fp_epochs(runs, curves).values()) == {3.0}


def test_few_qat_epochs_after_many_fp_epochs_get_a_wider_span():
    """15 FP + 2 QAT epochs (the demo grid): the QAT part is stretched to be readable, data untouched."""
    _, ax = kit.new_figure(2.0)
    ax.plot(np.arange(1, 16), np.zeros(15))
    ax.plot([16, 17], [1, 1])
    assert widen_qat([ax], 15, 1, 17)
    ticks = list(ax.get_xticks())
    assert {15, 16, 17} <= set(ticks) and ax.get_lines()[1].get_xdata().tolist() == [16, 17]
    to_px = ax.transData.transform
    assert to_px((17, 0))[0] - to_px((15, 0))[0] > 0.3 * (to_px((17, 0))[0] - to_px((1, 0))[0])
    assert not widen_qat([ax], 3, 1, 6)  # 3 + 3 epochs: already readable


def test_fp_parent_found_without_init_from(sweep):
    """Records without init_from (older specs) fall back to the FP run of the same task, arch and seed; with
    no curve of the parent, its recipe's epochs count."""
    runs, curves = sweep
    orphan = runs.assign(init_from=None)
    assert fp_epochs(orphan, curves) == fp_epochs(runs, curves)
    fp_ids = set(runs.loc[runs["method"] == "fp", "run_id"])
    no_fp_curves = curves[~curves["run_id"].isin(fp_ids)]
    assert set(fp_epochs(runs.assign(epochs=5), no_fp_curves).values()) == {5.0}


def test_reliability_diagrams_show_bin_counts(built):
    for stem, fig in built["reliability"]:
        diagram, counts = fig.axes
        # one shared confidence axis, labelled under the count panel
        assert diagram.get_xlabel() == "" and counts.get_xlabel() == "confidence", stem
        assert counts.get_yscale() == "log" and counts.get_ylabel().startswith("samples per bin"), stem
        steps = [p for p in counts.patches if type(p).__name__ == "StepPatch"]
        assert len(steps) >= 2, stem  # one count outline per method
        assert max(np.nanmax(s.get_data().values) for s in steps) > 0


def test_shift_heatmaps_have_fp_rows_first(built):
    assert all("w32-a32" not in stem for stem, _ in built["shift_heatmap"])  # no heatmap of FP alone
    for stem, fig in built["shift_heatmap"]:
        rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        fp_rows = [r for r in rows if r.startswith("FP")]
        assert fp_rows and rows[:len(fp_rows)] == fp_rows, stem
        assert any(r.startswith("LSQ") for r in rows) and any(r.startswith("AlignQ") for r in rows), stem
