"""The spec of a test-time adaptation run: a finished quantized run (QAT or PTQ), the TTA method and its
hyper-parameters, and the test stream. Its identity hashes all of it (the parent by its run id and spec), in
its own payload with ``kind: tta``, so no existing run id changes.

It answers the same questions a ``RunSpec`` does for the matrix (``run_id``, ``parent()``, task, arch,
method, bits, seed), so grids, launchers, status and tracking handle TTA runs like any other run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from benchmarks.data.streams import StreamSpec
from benchmarks.run.spec import RunSpec, TaskSpec

TTA_KIND = "tta"
TTA_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TtaSpec:
    parent_spec: RunSpec  # the quantized run whose final model is adapted
    method: str  # a TTA method name (methods.tta registry)
    stream: StreamSpec = field(default_factory=StreamSpec)
    hparams: dict[str, Any] = field(default_factory=dict)

    kind = TTA_KIND

    def __post_init__(self) -> None:
        if self.parent_spec.method == "fp":
            raise ValueError("a TTA run adapts a quantized run; its parent must not be an FP run")

    def parent(self) -> RunSpec:
        return self.parent_spec

    @property
    def task(self) -> TaskSpec:
        return self.parent_spec.task

    @property
    def arch(self) -> str:
        return self.parent_spec.arch

    @property
    def w_bits(self) -> int:
        return self.parent_spec.w_bits

    @property
    def a_bits(self) -> int:
        return self.parent_spec.a_bits

    @property
    def processes(self) -> int:
        """Test-time adaptation is online, one batch after another: always one process."""
        return 1

    @property
    def nodes(self) -> int:
        return 1

    @property
    def seed(self) -> int:
        return self.parent_spec.seed

    def to_dict(self) -> dict[str, Any]:
        """The record (spec.json, MLflow): the keys every run has, then the TTA-specific ones."""
        return {
            "kind": TTA_KIND, "task": self.parent_spec.to_dict()["task"], "arch": self.arch,
            "method": self.method, "w_bits": self.w_bits, "a_bits": self.a_bits, "seed": self.seed,
            "hparams": dict(self.hparams), "stream": self.stream.to_dict(),
            "quant_method": self.parent_spec.method, "init_from": self.parent_spec.run_id,
            "parent": self.parent_spec.to_dict(),
        }

    @property
    def run_id(self) -> str:
        payload = json.dumps({"schema_version": TTA_SCHEMA_VERSION, **self.to_dict()}, sort_keys=True,
                             default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TtaSpec":
        return cls(parent_spec=RunSpec.from_dict(data["parent"]), method=data["method"],
                   stream=StreamSpec.from_dict(dict(data.get("stream") or {})),
                   hparams=dict(data.get("hparams") or {}))


def spec_from_dict(data: dict[str, Any]) -> "RunSpec | TtaSpec":
    """Any run's spec from its record: a TTA spec when ``kind`` says so, else a training (QAT/FP) spec."""
    return TtaSpec.from_dict(data) if data.get("kind") == TTA_KIND else RunSpec.from_dict(data)
