"""Retraining the golden seed-0 runs gives their committed metrics bit for bit: speed work (fused kernels,
fewer host syncs) and refactors must not change results (issue #8). Exact only on the torch build and CPU kernel
family the records were made with (float sums differ between AVX2 and AVX512 kernels); skipped elsewhere."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import records
from benchmarks.spec import RunSpec
from benchmarks.train import run

GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke-golden"
MACHINE = json.loads((GOLDEN / "machine.json").read_text())


def _seed0(method: str) -> Path:
    for directory in sorted((GOLDEN / "runs").iterdir()):
        spec = json.loads((directory / "spec.json").read_text())["spec"]
        if spec["method"] == method and spec["seed"] == 0:
            return directory
    raise AssertionError(f"no golden {method} seed-0 run")


def _rows(directory: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in records.read_metrics(directory)]


@pytest.mark.skipif((torch.__version__, torch.backends.cpu.get_cpu_capability()) !=
                    (MACHINE["torch"], MACHINE["cpu_capability"]),
                    reason=f"golden records were made with torch {MACHINE['torch']} on "
                           f"{MACHINE['cpu_capability']} CPU kernels")
@pytest.mark.parametrize("method", ["lsq", "dorefa"])
def test_retraining_reproduces_the_golden_metrics(method, tmp_path):
    for directory in (_seed0("fp"), _seed0(method)):  # the FP parent first: the records hold no weights
        spec = RunSpec.from_dict(json.loads((directory / "spec.json").read_text())["spec"])
        assert spec.run_id == directory.name, "the run id scheme changed: regenerate the golden records"
        result = run(spec, tmp_path, grid="smoke-golden", log=lambda _: None)
        assert _rows(records.run_dir(tmp_path, spec.run_id)) == _rows(directory), spec.method
        assert result["metrics"] == json.loads((directory / "result.json").read_text())["metrics"], spec.method
