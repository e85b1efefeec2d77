"""How each method looks in every figure: a colour-blind-safe colour, a marker and a line style, and its
display name, so a method is recognisable in print, in greyscale and under deuteranopia.

Colours are the Okabe–Ito palette (Okabe & Ito 2008), distinguishable under the common colour-vision
deficiencies (``tests/analysis/test_figures.py`` checks every pair under simulated deuteranopia and
protanopia); the marker and the line style differ per method too, so no method depends on colour alone.

A newly registered method gets a colour, marker and dash of its own from the spare entries. ``method_style``
picks them by a stable hash of the name (the same on every run, never the style of a built-in method);
``styles_for`` styles a whole set of methods at once and, where two new methods would hash onto the same spare
entry, moves the later name (alphabetically) to the next free one, so no two methods in one figure look alike.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from benchmarks.run.labels import method_display, method_sort_key

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}

LineStyle = str | tuple[int, tuple[int, ...]]  # a name or (offset, on-off pattern)


@dataclass(frozen=True)
class MethodStyle:
    label: str
    color: str
    marker: str
    linestyle: LineStyle

    def line_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``Axes.plot`` / ``errorbar``."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle, "label": self.label}


# Every dash pattern differs (solid, dotted, dashed, dash-dot, dash-dot-dot, long dash, dash-dash-dot), so
# lines stay apart in greyscale print as well; patterns are in units of the line width.
_BUILTIN: dict[str, tuple[str, str, LineStyle]] = {
    "fp": (OKABE_ITO["black"], "s", (0, (1, 1))),
    "lsq": (OKABE_ITO["blue"], "o", "-"),
    "dorefa": (OKABE_ITO["orange"], "v", (0, (4, 2))),
    "alignq": (OKABE_ITO["bluish_green"], "^", (0, (6, 2, 1, 2))),
    "climbq": (OKABE_ITO["reddish_purple"], "D", (0, (5, 1, 1, 1, 1, 1))),
    "emaq": (OKABE_ITO["vermillion"], "P", (0, (10, 2))),
    "emaq-lt": (OKABE_ITO["sky_blue"], "X", (0, (3, 1, 3, 1, 1, 1))),
}
# The methods with a palette entry of their own (the papers' seven); every other method, QT-DoG, EoQ and the
# post-training and test-time methods included, takes a spare entry below.
STYLED_METHODS: tuple[str, ...] = tuple(_BUILTIN)
# For methods registered later: the remaining Okabe–Ito hue is too light on white (yellow), so Tol's dark
# and muted hues, chosen to stay apart from the seven above in normal vision and under simulated
# deuteranopia (the test checks both); markers and dashes the built-ins do not use.
SPARE_COLORS = ("#332288", "#661100", "#DDCC77", "#882255", "#117733", "#AA4499", "#999933")
SPARE_MARKERS = ("*", "h", "<", ">", "p", "d", "8")
SPARE_DASHES: tuple[LineStyle, ...] = ((0, (2, 2)), (0, (8, 2, 2, 2)), (0, (1, 3)),
                                       (0, (4, 1, 1, 1, 1, 1, 1, 1)), (0, (12, 3)), (0, (3, 3, 1, 3)),
                                       (0, (2, 1, 1, 1)))
SPARE_SLOTS = len(SPARE_COLORS)


def _spare(method: str, slot: int) -> MethodStyle:
    return MethodStyle(method_display(method), SPARE_COLORS[slot % SPARE_SLOTS],
                       SPARE_MARKERS[slot % SPARE_SLOTS], SPARE_DASHES[slot % SPARE_SLOTS])


def _hash_slot(method: str) -> int:
    return int(hashlib.sha1(method.encode()).hexdigest(), 16) % SPARE_SLOTS


def method_style(method: str) -> MethodStyle:
    """The style of ``method`` (a registry name such as ``emaq-lt``)."""
    if method in _BUILTIN:
        color, marker, dash = _BUILTIN[method]
        return MethodStyle(method_display(method), color, marker, dash)
    return _spare(method, _hash_slot(method))


def styles_for(methods: Iterable[str]) -> dict[str, MethodStyle]:
    """A style per method of a set, pairwise distinct while there are at most ``SPARE_SLOTS`` new methods.

    Figures style every method of the runs table with this, so a method keeps one style across a report.
    """
    methods = set(methods)  # once: an iterator would be spent by the first pass
    out = {m: method_style(m) for m in methods if m in _BUILTIN}
    taken: set[int] = set()
    for method in sorted(methods - set(out), key=method_sort_key):
        slot = _hash_slot(method)
        for step in range(SPARE_SLOTS):  # linear probing: the first free slot from the hashed one
            if (slot + step) % SPARE_SLOTS not in taken:
                slot = (slot + step) % SPARE_SLOTS
                break
        taken.add(slot)  # beyond SPARE_SLOTS new methods styles repeat; the legend label still differs
        out[method] = _spare(method, slot)
    return out
