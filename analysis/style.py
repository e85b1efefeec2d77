"""How each method looks in every figure: a colour-blind-safe colour, a marker and a line style, and its display
name, so a method is recognisable in print, in greyscale and under deuteranopia.

Colours are the Okabe–Ito palette (Okabe & Ito 2008), distinguishable under the common colour-vision
deficiencies; the marker and the line style differ per method too, so no method depends on colour alone. A
newly registered method gets a colour, marker and dash of its own from the spare entries, chosen by a stable
hash of its name (the same on every run, never the colour of a built-in method).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from benchmarks.run.labels import method_display

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}


@dataclass(frozen=True)
class MethodStyle:
    label: str
    color: str
    marker: str
    linestyle: str | tuple[int, tuple[int, ...]]

    def line_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``Axes.plot`` / ``errorbar``."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle, "label": self.label}


_BUILTIN = {
    "fp": (OKABE_ITO["black"], "s", (0, (1, 1))),
    "lsq": (OKABE_ITO["blue"], "o", "-"),
    "dorefa": (OKABE_ITO["orange"], "v", "--"),
    "alignq": (OKABE_ITO["bluish_green"], "^", "-."),
    "climbq": (OKABE_ITO["reddish_purple"], "D", (0, (5, 1, 1, 1, 1, 1))),
    "emaq": (OKABE_ITO["vermillion"], "P", "-"),
    "emaq-lt": (OKABE_ITO["sky_blue"], "X", "--"),
}
# For methods registered later: colours outside the built-in set (Okabe–Ito yellow, then Tol's muted hues,
# which stay apart from the seven above), markers and dashes the built-ins do not use.
_SPARE_COLORS = (OKABE_ITO["yellow"], "#882255", "#44AA99", "#999933", "#AA4499", "#117733", "#332288")
_SPARE_MARKERS = ("*", "h", "<", ">", "p", "d", "8")
_SPARE_DASHES = ((0, (3, 1)), (0, (3, 1, 1, 1)), (0, (7, 2)), (0, (1, 2)), ":", (0, (4, 2, 1, 2)), (0, (6, 1)))


def method_style(method: str) -> MethodStyle:
    """The style of ``method`` (a registry name such as ``emaq-lt``)."""
    if method in _BUILTIN:
        color, marker, dash = _BUILTIN[method]
        return MethodStyle(method_display(method), color, marker, dash)
    index = int(hashlib.sha1(method.encode()).hexdigest(), 16)
    return MethodStyle(method_display(method), _SPARE_COLORS[index % len(_SPARE_COLORS)],
                       _SPARE_MARKERS[index % len(_SPARE_MARKERS)], _SPARE_DASHES[index % len(_SPARE_DASHES)])
