"""Speed work (fused kernels, fewer host syncs) and refactors must not change results (issue #8).

* On any machine: a run trained with the fused kernels and the same run trained with the reference composites
swapped back in (``benchmarks.speed.setup.reference_kernels``) give the same metrics and final weights, bit
for bit (AlignQ, ClimbQ and EmaQ-LT cover the CDF kernels and the per-sample σ path EmaQ-LT shares with
ClimbQ). * On the machine kind the golden records were made on: retraining the golden seed-0 runs reproduces
their committed metrics exactly. Float sums differ between CPU kernel families (oneDNN/MKL pick kernels by
SIMD extensions and cache size, finer than torch's "AVX512"), so elsewhere this check skips and says why. """
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmarks.run.environment import cpu_kernel_fingerprint
from benchmarks.run.rundir import RunDir, read_json
from benchmarks.run.spec import RunSpec
from benchmarks.run.trainer import run
from benchmarks.speed.setup import reference_kernels

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "smoke-golden"
MACHINE = json.loads((GOLDEN / "machine.json").read_text())
SAME_KERNELS = (torch.__version__, cpu_kernel_fingerprint()) == (MACHINE["torch"], MACHINE.get("cpu_kernels"))


def _quiet(_: str) -> None:
    pass


def _golden_spec(method: str, seed: int = 0) -> tuple[Path, RunSpec]:
    for directory in sorted((GOLDEN / "runs").iterdir()):
        spec = RunSpec.from_dict(json.loads((directory / "spec.json").read_text())["spec"])
        if spec.method == method and spec.seed == seed:
            return directory, spec
    raise AssertionError(f"no golden {method} seed-{seed} run")


def _rows(directory: Path) -> list[dict]:
    rows = RunDir(directory).read_metrics()
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]


def _bits(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """Exact contents (the sign of zero included) of every tensor of a state dict."""
    return {name: t.detach().cpu().contiguous().numpy().tobytes() for name, t in state.items()}


@pytest.mark.parametrize("method", ["lsq", "dorefa", "alignq", "climbq", "emaq-lt"])
def test_fused_kernels_train_exactly_like_the_reference_composites(method, tmp_path):
    _, lsq_spec = _golden_spec("lsq")
    spec = dataclasses.replace(lsq_spec, method=method)
    fused, reference = tmp_path / "fused", tmp_path / "reference"
    run(spec.parent(), fused, log=_quiet)
    shutil.copytree(fused, reference)  # one FP parent for both
    run(spec, fused, log=_quiet)
    with reference_kernels(True):
        run(spec, reference, log=_quiet)
    a, b = RunDir.of(fused, spec.run_id).path, RunDir.of(reference, spec.run_id).path
    assert _rows(a) == _rows(b)
    assert read_json(a / "result.json")["metrics"] == read_json(b / "result.json")["metrics"]
    load = lambda d: torch.load(d / "final.pt", map_location="cpu", weights_only=True)  # noqa: E731
    assert _bits(load(a)) == _bits(load(b))


@pytest.mark.skipif(not SAME_KERNELS, reason=(
    f"golden records were made with torch {MACHINE['torch']} on CPU kernels "
    f"[{MACHINE.get('cpu_kernels', 'unrecorded')}]; this machine: torch {torch.__version__}, "
    f"[{cpu_kernel_fingerprint()}]"))
@pytest.mark.parametrize("method", ["lsq", "dorefa"])
def test_retraining_reproduces_the_golden_metrics(method, tmp_path):
    for directory, spec in (_golden_spec("fp"), _golden_spec(method)):  # the FP parent first: no weights kept
        assert spec.run_id == directory.name, "the run id scheme changed: regenerate the golden records"
        result = run(spec, tmp_path, grid="smoke-golden", log=_quiet)
        assert _rows(RunDir.of(tmp_path, spec.run_id).path) == _rows(directory), spec.method
        committed = json.loads((directory / "result.json").read_text())["metrics"]
        assert result.to_dict()["metrics"] == committed, spec.method
