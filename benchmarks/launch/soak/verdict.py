"""What a soak checks once its grid has settled: every run trained exactly once (or failed with its reason),
the same results as the fault-free reference, and one MLflow run per run id."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.run.rundir import RunDir, RunState

METRIC_KEYS = ("top1_last", "top1_best", "nll", "ece", "per_class_acc")
# "[<run>] lsq W4/A4 epoch 1/2 loss ...": written once per finished epoch, after its checkpoint
EPOCH_LINE = re.compile(r"\] \S+ \S+ epoch (\d+)/\d+ loss ")
DIVERGED = "diverged at epoch"


@dataclass
class Verdict:
    runs: int = 0
    done: int = 0
    lost: list[str] = field(default_factory=list)  # neither done nor failed with the expected reason
    duplicated: list[str] = field(default_factory=list)  # some epoch trained (and logged) twice
    mismatched: list[str] = field(default_factory=list)  # metrics or failure differ from the reference
    mlflow_missing: list[str] = field(default_factory=list)
    mlflow_duplicated: list[str] = field(default_factory=list)
    diverged_attempts: int = 0  # how often the diverging run was tried (each launch tries a failed run)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.mlflow_missing
                    or self.mlflow_duplicated)


def epoch_counts(directory: RunDir) -> Counter:
    """How many times each epoch of the run was finished, from its log.txt."""
    if not directory.log_path.exists():
        return Counter()
    return Counter(int(m.group(1)) for m in EPOCH_LINE.finditer(directory.log_path.read_text()))


def result_metrics(directory: RunDir) -> dict:
    metrics = json.loads(directory.result_path.read_text())["metrics"]
    return {key: metrics[key] for key in METRIC_KEYS}


def failure_reason(directory: RunDir) -> str:
    """The failure's reason without the loss value (NaN or inf may differ with the step it overflows at)."""
    error = (directory.read_failure() or {}).get("error", "")
    return error.split(" (loss")[0]


def judge(run_ids: list[str], diverging: str, output: Path, reference: Path,
          mlflow_counts: dict[str, int]) -> Verdict:
    """Compare ``output`` (the soak) with ``reference`` (the fault-free launch of the same grids)."""
    verdict = Verdict(runs=len(run_ids))
    for run_id in run_ids:
        soaked, ref = RunDir.of(output, run_id), RunDir.of(reference, run_id)
        state = soaked.state()
        if run_id == diverging:
            log = soaked.log_path.read_text() if soaked.log_path.exists() else ""
            verdict.diverged_attempts = log.count(f"FAILED: Diverged: {DIVERGED}")
            if state != RunState.FAILED or DIVERGED not in failure_reason(soaked):
                verdict.lost.append(run_id)
            elif failure_reason(soaked) != failure_reason(ref):
                verdict.mismatched.append(run_id)
        elif state != RunState.DONE:
            verdict.lost.append(run_id)
        else:
            verdict.done += 1
            if ref.state() != RunState.DONE or result_metrics(soaked) != result_metrics(ref):
                verdict.mismatched.append(run_id)
        if any(count > 1 for count in epoch_counts(soaked).values()):
            verdict.duplicated.append(run_id)
        synced = mlflow_counts.get(run_id, 0)
        if synced == 0:
            verdict.mlflow_missing.append(run_id)
        elif synced > 1:
            verdict.mlflow_duplicated.append(run_id)
    return verdict


def mlflow_runs_per_id(tracking_uri: str) -> dict[str, int]:
    """How many active MLflow runs carry each ``run_id`` tag, over every experiment of the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    counts: Counter = Counter()
    experiments = [e.experiment_id for e in client.search_experiments()]
    token = None
    while experiments:
        page = client.search_runs(experiments, filter_string="tags.run_id != ''", max_results=1000,
                                  page_token=token)
        counts.update(run.data.tags["run_id"] for run in page)
        token = page.token
        if not token:
            break
    return dict(counts)
