"""Synthetic run directories that follow the trainer's record contract exactly, for the analysis tests.

``make_sweep(root)`` writes the runs listed in ``RUNS`` (several seeds, one incomplete run whose
result.json holds a poison value but has no ``done`` marker, one failed run, and cells with missing seeds).
The numbers are chosen so that means and sample standard deviations are easy to compute by hand.
``log_to_mlflow`` mirrors the same dirs into an MLflow store the way the tracking sync does.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

LT_TASK = ("syndigits-synth-lt-r100", "mnistm-synth", "dann")
SHIFT_TASK = ("mnist-synth", "mnistm-synth", "dann")
STD_TASK = ("syndigits-synth", None, "standard")
ARCH = "dann_digits"
POLICY = {"fp": ("fp", "fp"), "lsq": ("8bit", "8bit"), "alignq": ("same", "fp")}
LT_COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
POISON = 0.0  # the incomplete run's result.json says this; it must never reach a mean

# (task, method, bits, seed) -> top1_last, or "incomplete" / "failed"
RUNS: dict[tuple, float | str] = {}
for _seed, _v in enumerate([80.0, 82.0, 84.0]):
    RUNS[(LT_TASK, "fp", 32, _seed)] = _v
for _seed, _v in enumerate([70.0, 71.0, 75.0]):
    RUNS[(LT_TASK, "lsq", 4, _seed)] = _v
RUNS[(LT_TASK, "alignq", 4, 0)] = 76.0
RUNS[(LT_TASK, "alignq", 4, 1)] = 78.0
RUNS[(LT_TASK, "alignq", 4, 2)] = "incomplete"
RUNS[(LT_TASK, "lsq", 2, 0)] = 50.0
RUNS[(LT_TASK, "lsq", 2, 1)] = "failed"
for _seed, _v in enumerate([60.0, 61.0, 62.0]):
    RUNS[(LT_TASK, "alignq", 2, _seed)] = _v
for _seed, _v in enumerate([90.0, 91.0, 92.0]):
    RUNS[(SHIFT_TASK, "fp", 32, _seed)] = _v
for _seed, _v in enumerate([85.0, 86.0, 87.0]):
    RUNS[(SHIFT_TASK, "lsq", 4, _seed)] = _v
for _seed in range(3):
    RUNS[(SHIFT_TASK, "alignq", 4, _seed)] = 88.0
RUNS[(STD_TASK, "fp", 32, 0)] = 95.0
RUNS[(STD_TASK, "fp", 32, 1)] = 97.0
RUNS[(STD_TASK, "lsq", 4, 0)] = 93.0
RUNS[(STD_TASK, "lsq", 4, 1)] = 94.0


def make_spec(task: tuple, method: str, bits: int, seed: int, policy: tuple[str, str] | None = None) -> dict:
    dataset, target, protocol = task
    first, last = policy or POLICY.get(method, ("8bit", "8bit"))
    return {"task": {"dataset": dataset, "target": target, "protocol": protocol}, "arch": ARCH,
            "method": method, "w_bits": bits, "a_bits": bits, "seed": seed,
            "hparams": {"lr_scale": 1.0} if method != "fp" else {},
            "recipe": {"epochs": 3, "lr": 0.01, "batch_size": 64},
            "layer_policy": {"first": first, "last": last},
            "init_from": None if method == "fp" else run_id_of(task, "fp", 32, seed)}


def run_id_of(task: tuple, method: str, bits: int, seed: int) -> str:
    return hashlib.sha1(json.dumps([task, method, bits, seed]).encode()).hexdigest()[:12]


def _reliability(top1: float) -> dict:
    conf = [(i + 0.5) / 15 for i in range(15)]
    # Over-confidence that grows as accuracy drops, so bins differ between methods.
    gap = (100.0 - top1) / 400.0
    return {"bin_confidence": conf, "bin_accuracy": [max(0.0, c - gap) for c in conf],
            "bin_count": [0] * 5 + [10 * i for i in range(1, 11)]}


def _layer(name: str, role: str, policy: str, spec: dict) -> dict:
    bits = {"8bit": 8, "same": spec["w_bits"]}.get(policy, 32)
    return {"name": name, "type": "Conv2d", "w_bits": bits, "a_bits": bits, "act_site": "input", "role": role,
            "kept_fp": policy == "fp" or spec["method"] == "fp"}


def make_result(run_id: str, spec: dict, top1: float) -> dict:
    dataset, target = spec["task"]["dataset"], spec["task"]["target"]
    lt = "lt-r" in dataset
    domains = {dataset: top1 + 10.0, **({target: top1} if target else {})}
    counts = LT_COUNTS if lt else [500] * 10
    return {
        "schema_version": 1, "run_id": run_id, "grid": "fixture", "spec": spec,
        "metrics": {
            "top1_last": top1, "top1_best": top1 + 1.0, "best_epoch": 2, "top1_val_selected": top1 - 0.5,
            "val_best": top1 + 2.0, "nll": 1.0 - top1 / 200.0, "ece": (100.0 - top1) / 1000.0,
            "per_class_acc": [top1 + 15.0 - 3.0 * c for c in range(10)],
            "head_acc": top1 + 5.0 if lt else None, "medium_acc": top1 if lt else None,
            "tail_acc": top1 - 10.0 if lt else None, "per_domain_acc": domains,
            "worst_domain_acc": min(domains.values()), "reliability": _reliability(top1),
        },
        "hmt_thresholds": {"head_min": 100, "tail_max": 20},
        "train_class_counts": counts,
        "layer_report": [_layer("conv1", "first", spec["layer_policy"]["first"], spec),
                         _layer("conv2", "body", "same", spec),
                         _layer("fc", "last", spec["layer_policy"]["last"], spec)],
        "timings": {"wall_s": 10.0, "train_s": 8.0, "eval_s": 2.0, "epochs": 3, "steps": 300},
        "environment": {"code_version": "abc123", "code_dirty": False, "python": "3.11", "torch": "2.13.0",
                        "device": "cpu", "host": "fixture", "slurm_job_id": None},
    }


# Per-epoch (test, val) offsets from top1_last, so that the selection rules reproduce result.json's values:
# last = epoch 3 (top1), oracle = epoch 2 (top1 + 1 = top1_best, best_epoch 2), val = epoch 1 (val top1 + 2 =
# val_best, test top1 - 0.5 = top1_val_selected). An incomplete run stops after epoch 1.
CURVE_OFFSETS = [(-0.5, 2.0), (1.0, 1.0), (0.0, 0.0)]


def _curve(run_id: str, top1: float, epochs: int) -> list[dict]:
    return [{"run_id": run_id, "epoch": e, "train_loss": 2.0 / e, "train_acc": top1 - 10.0 / e,
             "val_acc": top1 + CURVE_OFFSETS[e - 1][1], "test_acc": top1 + CURVE_OFFSETS[e - 1][0],
             "test_acc_by_domain": {}, "lr": 0.01, "time_s": 1.0} for e in range(1, epochs + 1)]


def write_run(runs_dir: Path, task: tuple, method: str, bits: int, seed: int, outcome: float | str,
              policy: tuple[str, str] | None = None, tuned: bool = False) -> Path:
    """One run dir. ``policy`` overrides the method's layer policy; ``tuned`` records tuned hyper-parameters
    (other hparams, and the provenance the matrix writes into spec.json)."""
    run_id = run_id_of(task, method, bits, seed)
    if policy or tuned:
        run_id = hashlib.sha1(json.dumps([run_id, policy, tuned]).encode()).hexdigest()[:12]
    spec = make_spec(task, method, bits, seed, policy)
    provenance = None
    if tuned:
        spec["hparams"] = {"lr_scale": 2.0}
        provenance = {"hparams": "tuned", "file": "tuned.json", "study": {"name": "fixture-study"}}
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"schema_version": 1, "run_id": run_id, "grid": "fixture",
                                                   "spec": spec, "provenance": provenance}))
    if outcome == "failed":
        (run_dir / "failed.json").write_text(json.dumps({"run_id": run_id, "error": "RuntimeError: boom",
                                                         "traceback": "...", "time": "2026-01-01T00:00:00"}))
        return run_dir
    top1 = POISON if outcome == "incomplete" else float(outcome)
    epochs = 1 if outcome == "incomplete" else 3
    lines = [json.dumps(r) for r in _curve(run_id, top1, epochs)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "result.json").write_text(json.dumps(make_result(run_id, spec, top1)))
    if outcome != "incomplete":
        (run_dir / "done").write_text("")
    return run_dir


def make_sweep(root: Path) -> Path:
    """Write every run of ``RUNS`` under ``root/runs``; returns ``root``."""
    for (task, method, bits, seed), outcome in RUNS.items():
        write_run(root / "runs", task, method, bits, seed, outcome)
    return root


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if not isinstance(value, str) else value
    return out


def log_to_mlflow(root: Path, tracking_uri: str, experiment: str, artifact_dir: Path) -> None:
    """Mirror the run dirs into MLflow as the sync does: one run per DONE or FAILED run dir (incomplete runs
    are not synced), tags run_id/status, params = flat spec, artifacts spec.json, metrics.jsonl and
    result.json (done runs)."""
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp_id = client.create_experiment(experiment, artifact_location=artifact_dir.as_uri())
    for run_dir in sorted((root / "runs").iterdir()):
        spec_record = json.loads((run_dir / "spec.json").read_text())
        status = "done" if (run_dir / "done").exists() else \
            "failed" if (run_dir / "failed.json").exists() else None
        if status is None:
            continue
        run = client.create_run(exp_id, run_name=spec_record["run_id"],
                                tags={"run_id": spec_record["run_id"], "status": status})
        params = [Param(key, value) for key, value in _flatten(spec_record["spec"]).items()]
        client.log_batch(run.info.run_id, params=params)  # one sqlite transaction, not one per param
        for name in ("spec.json", "metrics.jsonl") + (("result.json",) if status == "done" else ()):
            if (run_dir / name).exists():
                client.log_artifact(run.info.run_id, str(run_dir / name))
        client.set_terminated(run.info.run_id, {"done": "FINISHED", "failed": "FAILED"}[status])
