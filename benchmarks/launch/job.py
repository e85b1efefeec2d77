"""The job callable every launcher submits: it trains one run in a worker process."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import submitit

from benchmarks.run.rundir import RunClaimed
from benchmarks.run.spec import RunSpec


class RunJob(submitit.helpers.Checkpointable):
    """Trains one run in a launcher's worker; requeued by submitit on preemption/time-out, it resumes."""

    def __call__(self, spec_dict: dict[str, Any], output: str, grid: str | None, data_root: str | None,
                 device: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
        from benchmarks.run.termination import stop_on_sigterm
        from benchmarks.run.trainer import run  # imported in the worker: keeps the pickled callable light

        stop_on_sigterm()

        visible = os.environ.get("QBENCH_GPU")
        if visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
        spec = RunSpec.from_dict(spec_dict)
        try:
            result = run(spec, Path(output), grid=grid, data_root=data_root, device=device,
                         provenance=provenance)
        except RunClaimed as claimed:  # another launcher's worker trains it: not a failure of this job
            print(f"[{spec.run_id}] skipped: {claimed}", flush=True)
            return {"run_id": spec.run_id, "skipped": str(claimed)}
        return {"run_id": spec.run_id, "top1_last": result.metrics.top1_last if result else None}
