"""Frozen hyper-parameters: the best trial of a tuning study, one versioned JSON file per
(method, task, arch, W/A bits), committed under ``benchmarks/hparams/tuned/`` and used by the matrix.

File ``<root>/<method>/<task_slug>__<arch>__w<W>a<A>.json`` (``task_slug``: ``TaskSpec.label`` with ``->``
and ``/`` made filename-safe)::

    {"format": 1, "method": "lsq", "task": "mnist", "arch": "dann_digits", "w_bits": 4, "a_bits": 4,
     "hparams": {...method knobs...}, "recipe_overrides": {"lr": 0.03, "weight_decay": 1e-4},
     "study": {"name", "storage", "output", "best_trial", "best_run_id", "best_value", "n_trials",
               "n_complete", "n_pruned", "sampler", "seed"},
     "code_version": "<git sha of the tuning code>", "created": "2026-01-01T00:00:00+0000"}

``best_value`` is the best trial's final validation accuracy (%); tuning never evaluates the test split.

How the matrix uses it (``run_matrix.py --hparams tuned``)::

    tuned = load_tuned(spec.method, spec.task.label, spec.arch, spec.w_bits, spec.a_bits)
    if tuned is None: ...            # no study was frozen for this cell: fail or fall back, as the CLI says
    spec = apply_tuned(spec, tuned)  # recipe lr/weight_decay and method knobs replaced; visible in spec.json
    # provenance for the run's records / MLflow tags:
    #   tuned["path"], tuned["study"]["name"], tuned["study"]["storage"]

The values change the run id (they are part of the spec), so tuned and default runs never share a directory.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.run.rundir import atomic_write_json
from benchmarks.tuning.search_spaces import split_params
from benchmarks.run.spec import RunSpec, TaskSpec

FORMAT = 1
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "hparams" / "tuned"


def task_slug(task_label: str) -> str:
    """'mnist->mnistm-synth' -> 'mnist_to_mnistm-synth'; 'office31/amazon' -> 'office31-amazon'."""
    return task_label.replace("->", "_to_").replace("/", "-")


def tuned_path(method: str, task_label: str, arch: str, w_bits: int, a_bits: int,
               root: Path | str | None = None) -> Path:
    root = Path(root) if root is not None else DEFAULT_ROOT
    return root / method / f"{task_slug(task_label)}__{arch}__w{int(w_bits)}a{int(a_bits)}.json"


def freeze_best(study, root: Path | str | None = None) -> Path:
    """Write the best trial of a study made by ``benchmarks.tune`` to its frozen file; returns the path.

    The study's user attrs (``config``, ``storage``, ``output``) say which cell it tuned. Raises ValueError
    when the study has no completed trial.
    """
    from benchmarks.run.environment import code_version

    config = study.user_attrs["config"]
    summary = study_summary(study)
    if summary["best_trial"] is None:
        raise ValueError(f"study {study.study_name!r} has no completed trial to freeze")
    recipe, hparams = split_params(summary["best_params"])
    label = TaskSpec(**config["task"]).label
    data = {
        "format": FORMAT, "method": config["method"], "task": label, "arch": config["arch"],
        "w_bits": config["w_bits"], "a_bits": config["a_bits"], "hparams": hparams,
        "recipe_overrides": recipe,
        "study": {
            "name": study.study_name, "storage": summary["storage"], "output": summary["study_dir"],
            "best_trial": summary["best_trial"], "best_run_id": summary["best_run_id"],
            "best_value": summary["best_value"], "n_trials": sum(summary["trials"].values()),
            "n_complete": summary["trials"]["complete"], "n_pruned": summary["trials"]["pruned"],
            "sampler": config["sampler"], "seed": config["sampler_seed"],
        },
        "code_version": code_version()[0],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = tuned_path(config["method"], label, config["arch"], config["w_bits"], config["a_bits"], root)
    atomic_write_json(path, data)
    return path


def study_summary(study) -> dict[str, Any]:
    """Counts per trial state and the best trial of a study made by ``benchmarks.tune``."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    best = study.best_trial if counts["complete"] else None
    return {"study": study.study_name, "storage": study.user_attrs.get("storage"),
            "study_dir": study.user_attrs.get("output"), "trials": counts,
            "best_trial": best.number if best else None, "best_value": best.value if best else None,
            "best_params": best.params if best else None,
            "best_run_id": best.user_attrs.get("run_id") if best else None}


def load_tuned(method: str, task_label: str, arch: str, w_bits: int, a_bits: int,
               root: Path | str | None = None) -> dict[str, Any] | None:
    """The frozen hyper-parameters of one matrix cell, or None if no study was frozen for it.

    ``task_label`` is ``TaskSpec.label``; ``root`` defaults to ``benchmarks/hparams/tuned``. The returned
    dict is the file's content plus ``"path"`` (where it came from). Raises ValueError for a file of an
    unknown format or one that describes another cell (a renamed or hand-edited file).
    """
    path = tuned_path(method, task_label, arch, w_bits, a_bits, root)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown frozen-hparams format {data.get('format')!r} (expected {FORMAT})")
    want = {"method": method, "task": task_label, "arch": arch, "w_bits": int(w_bits), "a_bits": int(a_bits)}
    got = {key: data.get(key) for key in want}
    if got != want:
        raise ValueError(f"{path} describes {got}, not {want}")
    return {**data, "path": str(path)}


def apply_tuned(spec: RunSpec, tuned: dict[str, Any]) -> RunSpec:
    """``spec`` with the frozen recipe overrides (lr, weight decay) and method knobs; frozen knobs win over
    the spec's own, knobs the study did not search stay as they are."""
    recipe = replace(spec.recipe, **tuned.get("recipe_overrides", {}))
    return spec.with_(recipe=recipe, hparams={**spec.hparams, **tuned.get("hparams", {})})

