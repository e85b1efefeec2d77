"""Grid -> run specs -> on-disk state -> job callables.

``expand`` turns a grid (with filters and a profile) into run specs, FP parents first, each validated;
``states`` reads every run's state from its directory; ``RunJob`` is the callable a launcher submits: it
trains one run and, on preemption or time-out, asks submitit to requeue itself (the run then resumes from
its last checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmarks.cli.args import parse_bits
from benchmarks.matrix.dg_sweep import setting_recipes
from benchmarks.matrix.grids import Grid, GridError, GridTask
from benchmarks.matrix.tta import tta_specs, validate_tta_spec
from benchmarks.run.ensemble import ENSEMBLES, is_ensemble, member_specs
from benchmarks.run.rundir import RunDir, RunState
from benchmarks.run.spec import RunSpec
from benchmarks.run.tta_spec import TtaSpec
from benchmarks.run.validate import validate_spec
from benchmarks.tuning.frozen import apply_tuned
from methods import method_class

TunedLookup = Callable[[str, str, str, int, int], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Filters:
    """Keep only these values of each axis (None keeps all)."""

    methods: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    archs: tuple[str, ...] | None = None
    bits: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None


def expand(grid: Grid, profile: str = "full", filters: Filters = Filters(),
           tuned: TunedLookup | None = None, provenance: dict[str, dict] | None = None) -> list[Any]:
    """All runs of the grid after filtering: FP runs first (each QAT or PTQ run's parent included), then
    the QAT and PTQ runs, then TTA runs.

    ``tuned(method, task_label, arch, w, a)`` may return frozen hyper-parameters (``--hparams tuned``); they
    become part of the spec, so a tuned run is a different run from a default one. Where they are used,
    ``provenance[run_id]`` receives the frozen file and the study it came from.
    """
    _check_filters(grid, filters)
    def bits_of(method: str, gtask: GridTask) -> list[tuple[int, int]]:
        chosen = gtask.method_bits.get(method, grid.method_bits.get(method, grid.bits))
        return [parse_bits(b) for b in chosen if filters.bits is None or b in filters.bits]

    methods = [m for m in grid.methods if filters.methods is None or m in filters.methods]
    fp_runs: dict[str, RunSpec] = {}
    qat_runs: list[RunSpec] = []
    tta_runs: list[TtaSpec] = []
    for gtask in grid.tasks:
        if gtask.profiles is not None and profile not in gtask.profiles:
            continue
        names = {gtask.task.dataset, gtask.task.label}
        if filters.datasets is not None and not names & set(filters.datasets):
            continue
        if profile not in grid.recipes[gtask.recipe]:
            raise GridError(f"grid {grid.name!r} recipe {gtask.recipe!r} has no profile {profile!r}; "
                            f"valid: {', '.join(grid.recipes[gtask.recipe])}")
        for arch in gtask.archs:
            if filters.archs is not None and arch not in filters.archs:
                continue
            for seed, setting in product(grid.seeds, range(grid.hparam_draws.get(profile, 1))):
                if filters.seeds is not None and seed not in filters.seeds:
                    continue
                recipes = setting_recipes(grid.recipes[gtask.recipe][profile], gtask.task, setting, seed)
                base = RunSpec(task=gtask.task, arch=arch, method="fp", recipe=recipes["fp"], seed=seed,
                               arch_options=dict(grid.arch_options.get(arch, {})))
                for method in methods:
                    if method == "fp":
                        fp_runs.setdefault(base.run_id, base)
                        continue
                    # An ensemble cell (EoQ) trains its members: runs of the member method.
                    member = ENSEMBLES[method].member_method if is_ensemble(method) else method
                    # A post-training run trains nothing: it carries its parent's recipe (knobs are hparams).
                    recipe = recipes["fp"] if method_class(member).kind == "ptq" else recipes["qat"]
                    for w, a in bits_of(method, gtask):
                        spec = base.with_(method=member, w_bits=w, a_bits=a, recipe=recipe,
                                          fp_recipe=recipes["fp"],
                                          hparams=grid.method_hparams(member, profile),
                                          layer_policy=grid.layer_policy)
                        frozen = tuned(method, spec.task.label, arch, w, a) if tuned else None
                        if frozen:
                            spec = apply_tuned(spec, frozen)
                            if provenance is not None:
                                provenance[spec.run_id] = {"hparams": "tuned",
                                                           "file": str(frozen.get("path")),
                                                           "study": frozen.get("study")}
                        members = [spec]
                        if is_ensemble(method):
                            members = member_specs(spec, ENSEMBLES[method].size)
                        for run in members:
                            parent = run.parent()
                            fp_runs.setdefault(parent.run_id, parent)
                            if run not in qat_runs:  # an ensemble's first member may be a run of its own
                                qat_runs.append(run)
                        tta_runs += tta_specs(grid, gtask, spec, profile)
    specs: list[Any] = list(fp_runs.values()) + qat_runs
    for spec in specs:
        validate_spec(spec)
    for tta in tta_runs:
        validate_tta_spec(tta)
    return specs + tta_runs


def _check_filters(grid: Grid, filters: Filters) -> None:
    """A filter value that the grid does not contain is a typo: say so instead of launching nothing."""
    axes = {
        "methods": grid.methods, "seeds": grid.seeds,
        "bits": list(dict.fromkeys(grid.bits + [b for per_method in [grid.method_bits] + [
            t.method_bits for t in grid.tasks] for bits in per_method.values() for b in bits])),
        "archs": sorted({a for t in grid.tasks for a in t.archs}),
        "datasets": sorted({t.task.dataset for t in grid.tasks} | {t.task.label for t in grid.tasks}),
    }
    for axis, valid in axes.items():
        chosen = getattr(filters, axis)
        for value in chosen or ():
            if axis == "bits":
                parse_bits(value)
            if value not in valid:
                raise GridError(f"--{axis} value {value!r} is not in grid {grid.name!r}; valid: "
                                f"{', '.join(str(v) for v in valid)}")


def states(specs: Iterable[RunSpec], output: Path) -> dict[str, RunState]:
    return {spec.run_id: RunDir.of(output, spec.run_id).state() for spec in specs}
