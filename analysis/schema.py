"""The run-record schema as the analysis reads it: one flat row per run, with defaults for every key.

Records are written by the trainer (``spec.json``, ``result.json``, ``metrics.jsonl``, ``done``,
``failed.json``). Results are read through ``benchmarks.run.result.ResultRecord``, the trainer's own schema;
old specs lack keys that newer ones have (DomainBed forks broke on exactly this), so every spec field is read
through :func:`dig` with a default and a missing key never raises.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import Any

from benchmarks.run.labels import as_bits, bits_label, task_label
from benchmarks.run.result import Metrics, ResultRecord, Timings

log = logging.getLogger(__name__)

DONE, INCOMPLETE, FAILED, MISSING = "done", "incomplete", "failed", "missing"

PROTOCOL_ORDER = ["standard", "source_only", "dann"]

# Scalar metrics copied from result.json["metrics"]; all accuracies are percent, ece is a fraction.
SCALAR_METRICS = [
    # the trainer's own selections (kept for runs.csv; tables use analysis.selection's rules on metrics.jsonl)
    "top1_last", "top1_best", "best_epoch", "top1_val_selected", "val_best", "nll", "ece",
    "head_acc", "medium_acc", "tail_acc", "worst_domain_acc",
]
# Structured values kept as Python objects in the DataFrame and as JSON text in the CSV.
JSON_COLUMNS = ["per_class_acc", "per_domain_acc", "reliability", "train_class_counts", "layer_report",
                "hparams", "recipe"]

_LT_RE = re.compile(r"-lt-r(\d+(?:\.\d+)?)")


def dig(obj: Any, path: str, default: Any = None) -> Any:
    """``dig(d, "a.b.c")`` = ``d["a"]["b"]["c"]``, or ``default`` when any level is missing or not a dict."""
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return default if obj is None else obj


def parse_dataset(name: str | None) -> dict[str, Any]:
    """Split a dataset name such as ``syndigits-synth-lt-r100`` into its parts.

    ``base`` is the name without the synthetic and long-tail suffixes (``syndigits``), ``synthetic`` says
    whether it is one of our offline stand-ins (``-synth``), and ``lt_ratio`` is the imbalance ratio ρ.
    """
    name = (name or "").strip().lower()
    match = _LT_RE.search(name)
    lt_ratio = float(match.group(1)) if match else None
    base = _LT_RE.sub("", name)
    synthetic = "-synth" in base
    base = base.replace("-synth", "")
    return {"base": base, "synthetic": synthetic, "lt_ratio": lt_ratio}


def protocol_sort_key(protocol: str) -> tuple[int, str]:
    if protocol in PROTOCOL_ORDER:
        return (PROTOCOL_ORDER.index(protocol), "")
    return (len(PROTOCOL_ORDER), str(protocol))


def spec_columns(spec: dict[str, Any], grid: Any = None) -> dict[str, Any]:
    """The spec part of a row (identical for done, incomplete and failed runs)."""
    dataset = dig(spec, "task.dataset", "unknown")
    target = dig(spec, "task.target")
    w_bits = as_bits(dig(spec, "w_bits"), 32)
    a_bits = as_bits(dig(spec, "a_bits"), 32)
    parsed = parse_dataset(dataset)
    return {
        "grid": grid,
        "dataset": dataset,
        "target": target,
        "protocol": dig(spec, "task.protocol", "standard"),
        "task": task_label(dataset, target),
        "lt_ratio": parsed["lt_ratio"],
        "synthetic": parsed["synthetic"] or parse_dataset(target)["synthetic"],
        "arch": dig(spec, "arch", "unknown"),
        "method": dig(spec, "method", "unknown"),
        "w_bits": w_bits,
        "a_bits": a_bits,
        "bits_label": bits_label(w_bits, a_bits),
        "seed": as_bits(dig(spec, "seed"), -1),
        "first_layer": dig(spec, "layer_policy.first"),
        "last_layer": dig(spec, "layer_policy.last"),
        # first/last layer precision as one key: rows of different policies are different configurations;
        # a null policy means the method's default (the effective one is in layer_report)
        "policy": f"{dig(spec, 'layer_policy.first', '-')}/{dig(spec, 'layer_policy.last', '-')}"
        if dig(spec, "layer_policy") else "default",
        "config_id": config_id(spec),
        "init_from": dig(spec, "init_from"),
        "epochs": dig(spec, "recipe.epochs"),
        "hparams": dig(spec, "hparams", {}),
        "recipe": dig(spec, "recipe", {}),
    }


def hparams_source(provenance: Any) -> str:
    """``tuned`` when the run's hyper-parameters were frozen from a tuning study (spec.json ``provenance``
    ``{"hparams": "tuned", ...}``), else ``default`` (the grid's own values)."""
    return "tuned" if dig(provenance, "hparams") == "tuned" else "default"


def config_id(spec: dict[str, Any]) -> str:
    """Hash of the spec without seed and FP parent: runs that differ only by seed share it, so a table cell
    mixing other differences (hparams, recipe, task options) can be flagged in the coverage table."""
    rest = {k: v for k, v in spec.items() if k not in ("seed", "init_from")}
    return hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:10]


def effective_policy(layer_report: list[dict[str, Any]]) -> str | None:
    """What the first and last layers really ran at, from the layer report: ``W8A8/fp`` etc."""
    def describe(role: str) -> str:
        layer = next((x for x in layer_report if isinstance(x, dict) and x.get("role") == role), None)
        if layer is None:
            return "?"
        return "fp" if layer.get("kept_fp") else f"W{layer.get('w_bits')}A{layer.get('a_bits')}"

    return f"{describe('first')}/{describe('last')}" if layer_report else None


def result_columns(result: ResultRecord | None) -> dict[str, Any]:
    """The metric part of a row, from a finished run's result record (None: incomplete or failed run, whose
    metric columns are None/NaN)."""
    metrics = result.metrics if result is not None else Metrics()
    timings = result.timings if result is not None else Timings()
    env = result.environment if result is not None else {}
    thresholds = (result.hmt_thresholds if result is not None else None) or {}
    layers = result.layer_report if result is not None else []
    row: dict[str, Any] = {m: _float(getattr(metrics, m)) for m in SCALAR_METRICS}
    row.update({
        "per_class_acc": metrics.per_class_acc or [],
        "per_domain_acc": metrics.per_domain_acc or {},
        "reliability": metrics.reliability or {},
        "train_class_counts": (result.train_class_counts if result is not None else None) or [],
        "hmt_head_min": thresholds.get("head_min"),
        "hmt_tail_max": thresholds.get("tail_max"),
        "layer_report": layers,
        "effective_policy": effective_policy(layers),
        "wall_s": _float(timings.wall_s),
        "train_s": _float(timings.train_s),
        "steps": timings.steps,
        "code_version": env.get("code_version"),
        "code_dirty": env.get("code_dirty"),
        "torch": env.get("torch"),
        "device": env.get("device"),
    })
    return row


def empty_result_columns() -> dict[str, Any]:
    """Metric columns of a run that has no ``result.json`` (incomplete or failed)."""
    return result_columns(None)


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def to_csv_value(value: Any) -> Any:
    """Lists and dicts become sorted JSON text so the CSV is stable and loadable."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value
