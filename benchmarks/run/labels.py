"""The one home of the labels people read: method display names and order, W/A bits, tasks.

Torch-free, so ``analysis/`` imports it too. The CLIs, run logs, MLflow tags, tables and figures all spell a
thing the same way because they all call these functions.
"""
from __future__ import annotations

import re
from typing import Any

# The papers' order: the FP reference, the uniform baselines, then the CDF family. Unknown (newly registered)
# methods sort after these, alphabetically.
METHOD_ORDER: tuple[str, ...] = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt", "qtdog", "eoq")
METHOD_DISPLAY: dict[str, str] = {
    "fp": "FP", "lsq": "LSQ", "dorefa": "DoReFa", "alignq": "AlignQ", "climbq": "ClimbQ", "emaq": "EmaQ",
    "emaq-lt": "EmaQ-LT", "qtdog": "QT-DoG", "eoq": "EoQ",
    # post-training quantization (sorted after the QAT methods, with the figures' spare styles); TTAQ is our
    # reconstruction of a method without public text or code, and its label says so
    "rtn": "RTN", "adaround": "AdaRound", "brecq": "BRECQ", "qdrop": "QDrop", "ttaq": "TTAQ-recon",
}
FULL_PRECISION_BITS = 32
# Names that become paths (grid names, study names): no separators, no "..", nothing a shell treats specially.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_BITS_LABEL = re.compile(r"^W(\d+)/A(\d+)$")


def check_plain_name(what: str, name: str, becomes: str) -> str:
    """``name`` when it is a plain name; else a one-line ValueError saying what is allowed and why."""
    if not SAFE_NAME.fullmatch(str(name)) or ".." in str(name):
        raise ValueError(f"{what} {name!r} is not a plain name (letters, digits, '.', '_', '-', at most 100; "
                         f"it becomes the directory {becomes})")
    return str(name)


def method_display(method: str) -> str:
    """``emaq-lt`` -> ``EmaQ-LT``; a method without a display name is shown by its registry name."""
    return METHOD_DISPLAY.get(method, method)


def method_sort_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def as_bits(value: Any, default: int = FULL_PRECISION_BITS) -> int:
    """A bit width read from a record (int, numeric string); anything else counts as full precision."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def bits_label(w_bits: Any, a_bits: Any, method: str | None = None) -> str:
    """``W4/A4``; ``FP`` for the full-precision method when ``method`` is given (its records keep 32/32)."""
    if method == "fp":
        return "FP"
    return f"W{as_bits(w_bits)}/A{as_bits(a_bits)}"


def bits_slug(w_bits: Any, a_bits: Any) -> str:
    """``w4a4``: the bits in file and study names."""
    return f"w{as_bits(w_bits)}a{as_bits(a_bits)}"


def parse_bits_label(label: str) -> tuple[int, int]:
    """``W2/A4`` -> (2, 4); raises ValueError for anything else."""
    match = _BITS_LABEL.match(str(label))
    if match is None:
        raise ValueError(f"invalid bits label {label!r}; expected W<bits>/A<bits> such as W4/A4")
    return int(match.group(1)), int(match.group(2))


def bits_sort_key(label: str) -> tuple[int, int]:
    """W/A labels sort numerically (W2/A4 before W4/A4); ``FP`` first."""
    return (0, 0) if label == "FP" else parse_bits_label(label)


def task_key(dataset: str, target: str | None) -> str:
    """``mnist->mnistm-synth``: the ASCII task name used on command lines, in filters and in file names."""
    return dataset if target is None else f"{dataset}->{target}"


def task_label(dataset: Any, target: Any) -> str:
    """``mnist→mnistm-synth``: the task as tables and figures show it."""
    return f"{dataset}→{target}" if target else str(dataset)


def task_slug(key: str) -> str:
    """``mnist->mnistm-synth`` -> ``mnist_to_mnistm-synth``; ``office31/amazon`` -> ``office31-amazon``."""
    return key.replace("->", "_to_").replace("/", "-")


def cell_name(method: str, task: str, arch: str, w_bits: int, a_bits: int) -> str:
    """``lsq__mnist_to_mnistm-synth__dann_digits__w4a4``: one matrix cell, as a study or file name."""
    return f"{method}__{task_slug(task)}__{arch}__{bits_slug(w_bits, a_bits)}"
