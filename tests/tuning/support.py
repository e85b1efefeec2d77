"""Helpers for the tuning tests: a grid whose runs have architecture options and a layer policy."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ARCH_OPTIONS = {"dropout": 0.25}  # dann_digits' one option; offline, unlike resnet50's pretrained=imagenet
LAYER_POLICY = {"first": "fp", "last": "8bit"}


def optioned_grid(tmp: Path) -> Path:
    """The smoke grid (FP and LSQ only) with ``ARCH_OPTIONS`` for dann_digits and ``LAYER_POLICY``: the case
    where a study that forgot them would train another model than the matrix."""
    data = yaml.safe_load((REPO / "benchmarks/grids/smoke.yaml").read_text())
    data.update(name="optioned", methods=["fp", "lsq"], arch_options={"dann_digits": dict(ARCH_OPTIONS)},
                layer_policy=dict(LAYER_POLICY))
    path = tmp / "optioned.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
