"""Run ids never change by accident: the ids of the smoke, demo and longtail grids (both profiles), computed
before ``benchmarks/`` was reorganised into packages and committed in ``tests/golden/run_ids.json``, equal
the ids this code computes from the same grid files (frozen copies in ``tests/golden/grids/``, so later edits
to the shipped grids do not move the target). A finished run found again by its id is never trained twice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
EXPECTED = json.loads((GOLDEN / "run_ids.json").read_text())


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_run_ids_are_unchanged(key):
    name, profile = key.split("/")
    specs = expand(load_grid(str(GOLDEN / "grids" / f"{name}.yaml")), profile)
    assert [s.run_id for s in specs] == EXPECTED[key]
