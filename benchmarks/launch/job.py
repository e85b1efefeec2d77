"""The job callable every launcher submits for a matrix run (it trains one run in a worker process), and the
GPU assignment the local pool hands to its workers."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import submitit

from benchmarks.run.rundir import RunClaimed
from benchmarks.run.tta_spec import spec_from_dict

# The local pool names each worker's GPU here; the job applies it before torch touches CUDA. Not
# CUDA_VISIBLE_DEVICES itself: submitit copies the launcher's environment, and the launcher keeps its own.
GPU_ENV = "QBENCH_GPU"


def use_assigned_gpu() -> None:
    """Restrict this worker to the GPU the local pool assigned to it (no-op elsewhere)."""
    visible = os.environ.get(GPU_ENV)
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible


CLAIM_POLL_S = 5.0  # how often a worker whose run is claimed elsewhere looks again


class RunJob(submitit.helpers.Checkpointable):
    """Trains one run in a launcher's worker; requeued by submitit on preemption/time-out, it resumes.

    ``launched_at`` is when the launch read the run states and made this callable (it is pickled with every
    job it submits): a run that failed before then is retried on purpose, one that another job failed since
    (a second launcher's, or a killed launcher's still-queued job) is not trained again; the job reports
    that failure (FailedElsewhere).
    """

    def __init__(self) -> None:
        self.launched_at = time.time()

    def __call__(self, spec_dict: dict[str, Any], output: str, grid: str | None, data_root: str | None,
                 device: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
        # Imported in the worker: keeps the pickled callable light. run_scaled is trainer.run for a run of one
        # process; a data-parallel one joins its SLURM job's other tasks, or spawns its processes here.
        from benchmarks.run.distributed_run import run_scaled as run
        from benchmarks.run.termination import raise_if_terminated, stop_on_sigterm

        stop_on_sigterm()
        use_assigned_gpu()
        spec = spec_from_dict(spec_dict)  # a training (FP/QAT) or a TTA run
        told = False
        while True:
            try:
                result = run(spec, Path(output), grid=grid, data_root=data_root, device=device,
                             provenance=provenance, failed_after=getattr(self, "launched_at", None))
                break
            except RunClaimed as claimed:
                # Another launcher's worker (or the job this one requeues) trains it. Wait, then take its
                # result, or take over the run if that owner dies: never train it twice, never report it
                # failed, and this launcher's dependants start once it is done.
                if not told:
                    print(f"[{spec.run_id}] waiting: {claimed}", flush=True)
                    told = True
                raise_if_terminated(f"while waiting for run {spec.run_id}")
                time.sleep(CLAIM_POLL_S)
        return {"run_id": spec.run_id, "top1_last": result.metrics.top1_last if result else None}
