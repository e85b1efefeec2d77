"""Marks on compared table cells: bold only beyond noise, ties, and setups that differ.

The cells compared are the quantized rows of one W/A block in one column (``analysis.cells`` groups them).

- **Bold**: the cell with the highest mean, when it is *separated* from every other cell of the group.
  Separated = the 95 % t-interval of the paired per-seed difference (seeds run by both from the same FP
  parent, at least two of them) excludes 0; where fewer than two seeds pair, the two cells' own 95 %
  t-intervals must not overlap. A cell with one run cannot be separated from anything.
- **≈ (tie)**: when the highest mean is not separated from every other cell, it and each cell with n ≥ 2 that
  it is not separated from are marked ≈: statistically tied for best. A cell with n = 1 is never bold or ≈.
- **Setup letters**: when the cells of a group ran under different setups (requested layer policy, what the
  first/last layers really ran at, tuned or default hyper-parameters), every cell of that group carries the
  letter of its setup, and the caption lists the letters, so a comparison across setups is never silent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.stats import intervals_disjoint, paired_difference

if TYPE_CHECKING:
    from analysis.cells import Cell

SETUP_LETTERS = "abcdefghijklmnoprstuvwxyz"  # no q: Unicode has no superscript q


def separated(high: Cell, low: Cell) -> bool:
    """``high`` beats ``low`` beyond noise (see the module doc)."""
    paired = paired_difference(high.values, low.values, high.parents, low.parents)
    if paired.n >= 2:
        return paired.ci_low > 0
    return intervals_disjoint(high.summary, low.summary) and high.mean > low.mean


def mark_best(group: list[Cell]) -> None:
    """Set ``best`` or ``tie`` on the cells of one compared group (cells with n = 0 ignored)."""
    filled = [c for c in group if c.n > 0]
    if len(filled) < 2:
        return
    leader = max(filled, key=lambda c: c.mean)
    if leader.n < 2:
        return  # the highest mean is a single run: nothing can be claimed about it
    rivals = [c for c in filled if c is not leader]
    tied = [c for c in rivals if not separated(leader, c)]
    if not tied:
        leader.best = True
        return
    for cell in [leader, *tied]:
        cell.tie = cell.n >= 2


def mark_setups(groups: list[list[Cell]]) -> dict[str, str]:
    """Give a letter to every cell of a group that mixes setups; returns letter -> setup for the caption."""
    mixed = [g for g in groups if len({c.setup for c in g if c.n > 0}) > 1]
    setups = sorted({c.setup for g in mixed for c in g if c.n > 0})
    letters = {s: SETUP_LETTERS[i] if i < len(SETUP_LETTERS) else str(i) for i, s in enumerate(setups)}
    for group in mixed:
        for cell in group:
            if cell.n > 0:
                cell.setup_mark = letters[cell.setup]
    return {letter: setup for setup, letter in letters.items()}
