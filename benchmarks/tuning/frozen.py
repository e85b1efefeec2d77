"""Frozen hyper-parameters: the best trial of a tuning study, one versioned JSON file per
(method, task, arch, W/A bits), committed under ``benchmarks/hparams/tuned/`` and used by the matrix.

File ``<root>/<method>/<task_slug>__<arch>__w<W>a<A>.json`` (``labels.task_slug`` of ``TaskSpec.label``)::

    {"format": 2, "method": "lsq", "task": "mnist", "arch": "dann_digits", "w_bits": 4, "a_bits": 4,
     "spec": {...the study's base RunSpec.to_dict(), minus the searched knobs and the derived init_from...},
     "hparams": {...method knobs...}, "recipe_overrides": {"lr": 0.03, "weight_decay": 1e-4},
     "study": {"name", "storage", "output", "best_trial", "best_run_id", "best_value", "n_trials",
               "n_complete", "n_pruned", "sampler", "seed"},
     "code_version": "<git sha of the tuning code>", "created": "2026-01-01T00:00:00+0000"}

``best_value`` is the best trial's final validation accuracy (%); tuning never evaluates the test split.
The searched knobs are the keys of ``recipe_overrides`` and ``hparams`` (every trial sets all of them).

How the matrix uses it (``run_matrix.py --hparams tuned``)::

    tuned = load_tuned(spec.method, spec.task.label, spec.arch, spec.w_bits, spec.a_bits)
    if tuned is None: ...            # no study was frozen for this cell: fail or fall back, as the CLI says
    spec = apply_tuned(spec, tuned)  # ValueError unless the file was tuned for this spec (spec_mismatch)
    # provenance for the run's records / MLflow tags:
    #   tuned["path"], tuned["study"]["name"], tuned["study"]["storage"]

The values change the run id (they are part of the spec), so tuned and default runs never share a directory.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.run.labels import bits_slug, cell_name, task_slug
from benchmarks.run.redact import redact_url
from benchmarks.run.rundir import atomic_write_json
from benchmarks.run.spec import RunSpec
from benchmarks.tuning.search_spaces import RECIPE_KEYS, split_params

FORMAT = 2
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "hparams" / "tuned"
# Fields of the recorded spec that may differ from the run a file is applied to. The seed: values tuned on
# one seed are meant for every seed of the matrix. The test subsample: it only picks which test images are
# scored, and tuning never scores the test split. Everything else changes the model a trial trained.
UNCOMPARED = ("seed", "task.test_subsample")
_NESTED = ("task", "recipe", "fp_recipe")  # compared (and named in messages) field by field
_ABSENT = object()


def tuned_path(method: str, task_label: str, arch: str, w_bits: int, a_bits: int,
               root: Path | str | None = None) -> Path:
    root = Path(root) if root is not None else DEFAULT_ROOT
    return root / method / f"{task_slug(task_label)}__{arch}__{bits_slug(w_bits, a_bits)}.json"


def recorded_spec(spec: RunSpec, searched: Iterable[str]) -> dict[str, Any]:
    """``spec.to_dict()`` without the ``searched`` knobs (recipe keys and method hparams) and without
    ``init_from``, which is derived from the rest (and would change with the run-id schema alone)."""
    searched = set(searched)
    data = spec.to_dict()
    data.pop("init_from", None)
    data["recipe"] = {k: v for k, v in data["recipe"].items() if k not in searched & set(RECIPE_KEYS)}
    data["hparams"] = {k: v for k, v in data["hparams"].items() if k not in searched}
    return json.loads(json.dumps(data))  # as it reads back from the file: tuples become lists


def freeze_best(study, root: Path | str | None = None) -> Path:
    """Write the best trial of a study made by ``benchmarks.tune`` to its frozen file; returns the path.

    The study's user attrs (``config``, ``storage``, ``output``) say which base spec it tuned. Raises
    ValueError when the study has no completed trial.
    """
    from benchmarks.run.environment import code_version

    config = study.user_attrs["config"]
    base = RunSpec.from_dict(config["base"])
    summary = study_summary(study)
    if summary["best_trial"] is None:
        raise ValueError(f"study {study.study_name!r} has no completed trial to freeze")
    recipe, hparams = split_params(summary["best_params"])
    data = {
        "format": FORMAT, "method": base.method, "task": base.task.label, "arch": base.arch,
        "w_bits": base.w_bits, "a_bits": base.a_bits, "spec": recorded_spec(base, config["space"]),
        "hparams": hparams, "recipe_overrides": recipe,
        "study": {
            "name": study.study_name, "storage": redact_url(summary["storage"]),
            "output": summary["study_dir"],
            "best_trial": summary["best_trial"], "best_run_id": summary["best_run_id"],
            "best_value": summary["best_value"], "n_trials": sum(summary["trials"].values()),
            "n_complete": summary["trials"]["complete"], "n_pruned": summary["trials"]["pruned"],
            "sampler": config["sampler"], "seed": config["sampler_seed"],
        },
        "code_version": code_version()[0],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = tuned_path(base.method, base.task.label, base.arch, base.w_bits, base.a_bits, root)
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
    unknown or old format or one that describes another cell (a renamed or hand-edited file).
    """
    path = tuned_path(method, task_label, arch, w_bits, a_bits, root)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") == 1:  # no record of the arch options, layer policy or recipe it was tuned with
        raise ValueError(f"{path}: format 1 does not record the run spec it was tuned for; re-freeze it with "
                         f"benchmarks/tune.py ... --freeze (format {FORMAT})")
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown frozen-hparams format {data.get('format')!r} (expected {FORMAT})")
    want = {"method": method, "task": task_label, "arch": arch, "w_bits": int(w_bits), "a_bits": int(a_bits)}
    got = {key: data.get(key) for key in want}
    if got != want:
        raise ValueError(f"{path} describes {got}, not {want}")
    return {**data, "path": str(path)}


def spec_mismatch(tuned: dict[str, Any], spec: RunSpec) -> list[str]:
    """How ``spec`` differs from the spec ``tuned`` was tuned for, outside the searched knobs and
    ``UNCOMPARED``: ``["arch_options {} != {'dropout': 0.25}", ...]`` (recorded value first); [] if none."""
    searched = set(tuned.get("recipe_overrides", {})) | set(tuned.get("hparams", {}))
    recorded, wanted = _flat(tuned["spec"]), _flat(recorded_spec(spec, searched))
    return [f"{key} {_short(recorded.get(key, _ABSENT))} != {_short(wanted.get(key, _ABSENT))}"
            for key in sorted(set(recorded) | set(wanted))
            if key not in UNCOMPARED and recorded.get(key, _ABSENT) != wanted.get(key, _ABSENT)]


def apply_tuned(spec: RunSpec, tuned: dict[str, Any]) -> RunSpec:
    """``spec`` with the frozen recipe overrides (lr, weight decay) and method knobs; frozen knobs win over
    the spec's own, knobs the study did not search stay as they are. Raises a one-line ValueError when the
    file was tuned for another run (``spec_mismatch``): its values would belong to a different model."""
    mismatch = spec_mismatch(tuned, spec)
    if mismatch:
        where = tuned.get("path", "frozen hparams")
        cell = cell_name(spec.method, spec.task.label, spec.arch, spec.w_bits, spec.a_bits)
        raise ValueError(f"{where} was tuned for another run than this {cell}: {'; '.join(mismatch)} "
                         "(tuned != this run); re-tune for this spec (tune.py --grid) or run without "
                         "--hparams tuned")
    recipe = replace(spec.recipe, **tuned.get("recipe_overrides", {}))
    return spec.with_(recipe=recipe, hparams={**spec.hparams, **tuned.get("hparams", {})})


def _flat(data: dict[str, Any]) -> dict[str, Any]:
    flat = {key: value for key, value in data.items() if key not in _NESTED or not isinstance(value, dict)}
    for key in _NESTED:
        if isinstance(data.get(key), dict):
            flat.update({f"{key}.{sub}": value for sub, value in data[key].items()})
    return flat


def _short(value: Any, limit: int = 80) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."
