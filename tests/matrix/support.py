"""Helpers for the end-to-end matrix tests: run the CLI, read metrics of finished runs, a longer grid."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
METRIC_KEYS = ("top1_last", "top1_best", "nll", "ece", "per_class_acc")


def run_matrix(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    return out


def finished_metrics(output: Path) -> dict[str, dict]:
    """run_id -> the metrics that must not depend on how or where a run was launched."""
    found = {}
    for result in sorted((output / "runs").glob("*/result.json")):
        if (result.parent / "done").exists():
            metrics = json.loads(result.read_text())["metrics"]
            found[result.parent.name] = {k: metrics[k] for k in METRIC_KEYS}
    return found


def longer_grid(tmp: Path, epochs: int = 4, steps: int = 12) -> Path:
    """The smoke grid with more epochs, so a run can be interrupted in the middle."""
    text = (REPO / "benchmarks/grids/smoke.yaml").read_text()
    text = text.replace("name: smoke", "name: longer").replace("methods: [fp, lsq, dorefa]",
                                                               "methods: [fp, lsq]")
    text = text.replace("qat: {epochs: 2", f"qat: {{epochs: {epochs}").replace("steps_per_epoch: 8}",
                                                                               f"steps_per_epoch: {steps}}}")
    path = tmp / "longer.yaml"
    path.write_text(text)
    return path


def two_parent_grid(tmp: Path, seeds: tuple[int, ...] = (0, 1), methods: str = "fp, lsq, dorefa") -> Path:
    """The smoke grid over several seeds: one FP parent per seed, each with its own QAT runs."""
    text = (REPO / "benchmarks/grids/smoke.yaml").read_text().replace("name: smoke", "name: twoparents")
    text = text.replace("seeds: [0]", f"seeds: [{', '.join(map(str, seeds))}]")
    text = text.replace("methods: [fp, lsq, dorefa]", f"methods: [{methods}]")
    path = tmp / "twoparents.yaml"
    path.write_text(text)
    return path


def plant_unfitting_checkpoint(output: Path, run_id: str) -> None:
    """Make one run fail when it starts: its resume checkpoint is a real checkpoint whose model does not fit
    the run's network (as one left by other code would be), so restoring it raises and the run records the
    error in failed.json. (A checkpoint that is not a checkpoint at all is moved aside and the run restarts
    instead.) Deleting the run directory (--delete-incomplete) is the fix."""
    import torch

    directory = output / "runs" / run_id
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"not_this_network.weight": torch.zeros(1)}, "optimizer": {}, "method": {},
                "rng": torch.get_rng_state(), "epoch": 0}, directory / "checkpoint.pt")


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
