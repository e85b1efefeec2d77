"""The result record: what a finished run's ``result.json`` holds, as one versioned schema.

The trainer builds a :class:`ResultRecord` and writes it through ``RunDir.write_result``; ``analysis/`` and
tracking read it back with :meth:`ResultRecord.from_dict`, which checks the version and the required keys and
fills every optional key that an older record lacks with None. Torch-free, so ``analysis/`` may import it.

Accuracies are percent; ``ece`` is a fraction; ``reliability`` holds the calibration bins.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

RESULT_SCHEMA_VERSION = 1


class ResultSchemaError(ValueError):
    """A result record that cannot be read: the message names the problem in one line."""


@dataclass(frozen=True)
class Metrics:
    """Final metrics. A tuning run (no test split) has only ``val_last`` and ``val_best``."""

    top1_last: float | None = None
    top1_best: float | None = None  # the best epoch on the test set (the papers' oracle convention)
    best_epoch: int | None = None
    top1_val_selected: float | None = None  # test accuracy at the epoch of best validation accuracy
    val_best: float | None = None
    val_last: float | None = None
    per_class_acc: list[float | None] | None = None  # None for a class absent from the test set
    head_acc: float | None = None
    medium_acc: float | None = None
    tail_acc: float | None = None
    per_domain_acc: dict[str, float] | None = None
    worst_domain_acc: float | None = None
    ece: float | None = None
    nll: float | None = None
    reliability: dict[str, Any] | None = None


@dataclass(frozen=True)
class Timings:
    wall_s: float | None = None
    train_s: float | None = None
    eval_s: float | None = None
    epochs: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class ResultRecord:
    run_id: str
    spec: dict[str, Any]
    metrics: Metrics
    grid: str | None = None
    timings: Timings = field(default_factory=Timings)
    environment: dict[str, Any] = field(default_factory=dict)
    layer_report: list[dict[str, Any]] = field(default_factory=list)
    resolved_hparams: dict[str, Any] = field(default_factory=dict)
    hmt_thresholds: dict[str, Any] | None = None
    train_class_counts: list[int] | None = None
    task: dict[str, Any] | None = None
    schema_version: int = RESULT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON form. Metrics a run did not produce are left out (a tuning run has no test metrics)."""
        data = asdict(self)
        always = _ALWAYS_WRITTEN if self.metrics.top1_last is not None else frozenset()
        data["metrics"] = {k: v for k, v in data["metrics"].items() if v is not None or k in always}
        for key in ("hmt_thresholds", "train_class_counts", "task"):
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "result.json") -> "ResultRecord":
        """Read a record of this or an older version; raises ResultSchemaError naming ``source``."""
        if not isinstance(data, dict):
            got = type(data).__name__
            raise ResultSchemaError(f"{source}: a result record must be a JSON object, got {got}")
        version = data.get("schema_version", RESULT_SCHEMA_VERSION)
        if not isinstance(version, int) or version > RESULT_SCHEMA_VERSION:
            raise ResultSchemaError(f"{source}: result schema_version {version!r} is newer than this code "
                                    f"reads ({RESULT_SCHEMA_VERSION}); update qbench")
        if not isinstance(data.get("metrics"), dict):
            raise ResultSchemaError(f"{source}: missing or malformed key 'metrics'")
        # the oldest records lack them: the run dir has both
        for key, kind in (("run_id", str), ("spec", dict)):
            if key in data and not isinstance(data[key], kind):
                raise ResultSchemaError(f"{source}: malformed key {key!r}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("run_id", "")
        values.setdefault("spec", {})
        values["metrics"] = _known(Metrics, data["metrics"])
        values["timings"] = _known(Timings, data.get("timings") or {})
        for key in ("environment", "resolved_hparams"):
            values[key] = dict(values.get(key) or {})
        values["layer_report"] = list(values.get("layer_report") or [])
        return cls(**values)


# Keys every full result writes even when null (no validation split: no validation-selected epoch).
_ALWAYS_WRITTEN = frozenset({"top1_val_selected", "val_best"})


def _known(kind: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in names})
