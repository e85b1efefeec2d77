"""The dry run's GPU-hour estimate follows the compiled and packing records of the measured ratios file
(issue 18): a temporary file named by ``QBENCH_COST_RATIOS`` changes the estimate as stated."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.matrix import cost
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid

REPO = Path(__file__).resolve().parents[2]


def _ratios(tmp_path: Path, monkeypatch, **records) -> None:
    record = json.loads(cost.DEFAULT_RATIOS.read_text())
    for key in [k for k in record if k.startswith(("compiled_", "packing_"))]:
        del record[key]
    record.update(records)
    # a new file each time: cost.py caches a file by path and mtime, and a rewrite can keep the mtime
    path = tmp_path / f"ratios{len(list(tmp_path.glob('ratios*.json')))}.json"
    path.write_text(json.dumps(record))
    monkeypatch.setenv("QBENCH_COST_RATIOS", str(path))


def _qat():
    return next(s for s in expand(load_grid("smoke"), "full") if s.method != "fp")


def test_compiled_runs_use_the_measured_compile_speedup(tmp_path, monkeypatch):
    qat = _qat()
    compiled = replace(qat, recipe=replace(qat.recipe, compile=True))
    _ratios(tmp_path, monkeypatch)
    eager = cost.gpu_hours(qat)
    assert cost.gpu_hours(compiled) == pytest.approx(eager)  # no compiled record: eager cost assumed
    assert "no compiled record, eager cost assumed" in cost.adjustments_line(True, 1)
    cpu = {"date": "2030-01-02", "device": "a test CPU", "eager_over_compiled": {qat.method: 2.0}}
    _ratios(tmp_path, monkeypatch, compiled_cpu=cpu)
    assert cost.gpu_hours(compiled) == pytest.approx(eager / 2)
    assert cost.gpu_hours(qat) == pytest.approx(eager)  # an eager run keeps its cost
    line = cost.adjustments_line(True, 1)
    assert "compiled_cpu" in line and "a test CPU" in line
    gpu = {"date": "2030-01-03", "device": "a test GPU", "eager_over_compiled": {qat.method: 4.0}}
    _ratios(tmp_path, monkeypatch, compiled_cpu=cpu, compiled_cuda=gpu)  # the device-specific one wins
    assert cost.gpu_hours(compiled) == pytest.approx(eager / 4)
    line = cost.adjustments_line(True, 1)
    assert "compiled_cuda" in line and "2030-01-03" in line


def test_packed_runs_divide_by_the_measured_packing_gain(tmp_path, monkeypatch):
    qat = _qat()
    _ratios(tmp_path, monkeypatch)
    alone = cost.gpu_hours(qat)
    assert cost.gpu_hours(qat, runs_per_gpu=4) == pytest.approx(alone)
    assert "runs_per_gpu 4: no GPU packing record, no gain assumed" in cost.adjustments_line(False, 4)
    packing = {"date": "2030-01-04", "device": "a test device", "command": "bench_speed.py --packed 2",
               "runs": 2, "aggregate_over_single": 1.6}
    _ratios(tmp_path, monkeypatch, packing_cpu=packing)  # a CPU gain is named, not applied to GPU-hours
    assert cost.gpu_hours(qat, runs_per_gpu=4) == pytest.approx(alone)
    line = cost.adjustments_line(False, 4)
    assert "no GPU packing record, no gain assumed" in line
    assert "packing_cpu" in line and "not applied" in line
    cpu = {**packing, "aggregate_over_single": 9.0}
    _ratios(tmp_path, monkeypatch, packing_cpu=cpu, packing_cuda=packing)  # the GPU record is applied
    assert cost.gpu_hours(qat, runs_per_gpu=4) == pytest.approx(alone / 1.6)
    assert cost.gpu_hours(qat, runs_per_gpu=1) == pytest.approx(alone)
    assert cost.adjustments_line(False, 1) == ""
    line = cost.adjustments_line(False, 4)
    assert "/ 1.60" in line and "packing_cuda" in line and "2030-01-04" in line and "a test device" in line
    # the dry run packs as --runs-per-gpu says, and prints which record it used
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", "smoke",
                          "--dry-run", "--runs-per-gpu", "2", "--output", str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "estimate adjusted: runs_per_gpu 2: GPU-hours / 1.60" in out.stdout, out.stdout[-2000:]
    assert "measured 2030-01-04 on a test device" in out.stdout
