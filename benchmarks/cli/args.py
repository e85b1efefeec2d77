"""Argument parsing shared by the command-line entry points; bad input exits 2 with one line."""
from __future__ import annotations

import argparse
import ast
import sys

from methods.quant import check_bits


def fail(message: str) -> int:
    """Print one line on stderr (the first line of ``message``) and return exit status 2."""
    lines = str(message).strip().splitlines()
    print(f"error: {lines[0] if lines else message}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit 2 (the stock parser prints the whole
    usage block first, which buries the bad value in a CI log)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_bits(text: str) -> tuple[int, int]:
    """'4/4' -> (4, 4); a single number means W = A."""
    parts = str(text).split("/")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"invalid bits {text!r}; expected W/A such as 4/4, each 2..16 or 32")
    try:
        w = check_bits(int(parts[0]), "weight bits")
        a = check_bits(int(parts[-1]), "activation bits")
    except ValueError as err:  # name what was typed, not only the half of it that is wrong
        raise ValueError(f"invalid bits {text!r}: {err}") from None
    return w, a


def parse_hparams(items: list[str], what: str = "hyper-parameter") -> dict:
    """KEY=VALUE pairs; values are Python literals where they parse (0.2, True, 'x'), else strings.
    ``what`` names the pairs in the error message (e.g. ``architecture option``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid {what} {item!r}; expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def parse_layer_policy(text: str | None) -> dict[str, str] | None:
    """'fp/8bit' -> {'first': 'fp', 'last': '8bit'}; one mode ('fp') sets both; None keeps the method's
    default. The modes themselves are checked with the spec (``methods.LayerPolicy``)."""
    if text is None:
        return None
    first, _, last = text.partition("/")
    if not first or "/" in last:
        raise ValueError(f"invalid layer policy {text!r}; expected FIRST/LAST such as 8bit/fp, each "
                         "same|8bit|fp")
    return {"first": first, "last": last or first}
