"""Grids as data: a YAML file is a product of lists (tasks × archs × methods × bits × seeds) with recipes per
profile. ``load_grid`` validates a grid completely, so a malformed file fails before anything runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.run.labels import check_plain_name
from benchmarks.run.spec import Recipe, TaskSpec

GRID_DIR = Path(__file__).resolve().parents[1] / "grids"
PROFILES = ("full", "quick")
# A grid that says nothing compares every method under the LSQ convention: first and last layer at 8 bits.
DEFAULT_LAYER_POLICY: dict[str, str] = {"first": "8bit", "last": "8bit"}
PAPER_POLICY = "paper"
GRID_KEYS = {"name", "description", "methods", "bits", "seeds", "tasks", "recipes", "hparams", "layer_policy",
             "arch_options", "tta", "method_bits",
             "profile_hparams", "hparam_draws"}
# ``profiles``: the profiles a task belongs to (all when absent); ``stream``: its TTA stream's own keys;
# ``method_bits``: per-method W/A lists for this task only, over the grid's
TASK_KEYS = {"dataset", "target", "protocol", "archs", "recipe", "val_fraction", "test_subsample", "profiles",
             "stream", "method_bits", "image_size"}
TTA_KEYS = {"methods", "parents", "hparams", "streams"}


class GridError(ValueError):
    """A grid that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class GridTask:
    task: TaskSpec
    archs: tuple[str, ...]
    recipe: str
    profiles: tuple[str, ...] | None = None  # None: every profile
    stream: dict[str, Any] = field(default_factory=dict)  # TTA grids: this task's stream keys
    method_bits: dict[str, list[str]] = field(default_factory=dict)  # over the grid's, for this task


@dataclass
class Grid:
    name: str
    description: str
    methods: list[str]
    bits: list[str]
    seeds: list[int]
    tasks: list[GridTask]
    recipes: dict[str, dict[str, dict[str, Recipe]]]  # recipe name -> profile -> {"fp", "qat"}
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One first/last-layer policy for every method of the grid: a fair comparison. None means ``paper``:
    # each method keeps its own code's convention (to reproduce published numbers; tables mark the mix).
    layer_policy: dict[str, str] | None = None
    arch_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # profile -> method -> hyper-parameters over ``hparams`` (e.g. PTQ iterations reduced in ``quick``)
    profile_hparams: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    path: Path | None = None
    tta: "TtaGrid | None" = None  # test-time adaptation runs on the grid's quantized runs
    # Per-method W/A lists replacing ``bits`` for that method (e.g. weight-only QT-DoG at "7/32").
    method_bits: dict[str, list[str]] = field(default_factory=dict)
    # profile -> hyper-parameter settings per trial of a domain-generalization task: DomainBed's random
    # search (setting 0 = the recipe as written, 1.. = DomainBed's draws; benchmarks/matrix/dg_sweep.py)
    hparam_draws: dict[str, int] = field(default_factory=dict)

    def method_hparams(self, method: str, profile: str) -> dict[str, Any]:
        """The grid's hyper-parameters of ``method`` under ``profile``."""
        return {**self.hparams.get(method, {}), **self.profile_hparams.get(profile, {}).get(method, {})}


@dataclass(frozen=True)
class TtaGrid:
    """TTA methods × the grid's quantized runs of the ``parents`` methods, on a stream per profile."""

    methods: tuple[str, ...]
    parents: tuple[str, ...]
    streams: dict[str, dict[str, Any]]  # profile -> StreamSpec keys
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)


def available_grids() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def load_grid(name_or_path: str) -> Grid:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = GRID_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            valid = ", ".join(available_grids())
            raise GridError(f"unknown grid {name_or_path!r}; valid: {valid} or a YAML path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise GridError(f"malformed grid file {path}: YAML error{at}")
    return parse_grid(data, path)


def parse_grid(data: Any, path: Path | None = None) -> Grid:
    where = f"grid file {path}" if path else "grid"
    if not isinstance(data, dict):
        raise GridError(f"malformed {where}: expected a mapping at the top level")
    unknown = sorted(set(data) - GRID_KEYS)
    if unknown:
        valid = ", ".join(sorted(GRID_KEYS))
        raise GridError(f"malformed {where}: unknown key {unknown[0]!r}; valid: {valid}")
    for key in ("name", "methods", "bits", "seeds", "tasks", "recipes"):
        if key not in data:
            raise GridError(f"malformed {where}: missing key {key!r}")
    for key in ("methods", "bits", "seeds", "tasks"):
        if not isinstance(data[key], list) or not data[key]:
            raise GridError(f"malformed {where}: {key!r} must be a non-empty list")
    try:
        check_plain_name("grid name", str(data["name"]), "outputs/<name>")
    except ValueError as err:
        raise GridError(f"malformed {where}: {err}") from None
    try:
        recipes = {name: _parse_profiles(name, profiles) for name, profiles in dict(data["recipes"]).items()}
        tasks = [_parse_task(entry, recipes) for entry in data["tasks"]]
        seeds = [int(s) for s in data["seeds"]]
        profile_hparams = _parse_profile_hparams(data.get("profile_hparams") or {})
        hparam_draws = _parse_hparam_draws(data.get("hparam_draws") or {}, tasks)
    except (TypeError, ValueError) as err:
        raise GridError(f"malformed {where}: {err}") from None
    return Grid(name=str(data["name"]), description=str(data.get("description", "")),
                methods=[str(m) for m in data["methods"]], bits=[str(b) for b in data["bits"]], seeds=seeds,
                tasks=tasks, recipes=recipes, hparams=dict(data.get("hparams") or {}),
                layer_policy=_parse_layer_policy(data.get("layer_policy", DEFAULT_LAYER_POLICY), where),
                arch_options=dict(data.get("arch_options") or {}), profile_hparams=profile_hparams,
                path=path, tta=_parse_tta(data.get("tta"), where),
                method_bits={str(m): [str(b) for b in bits]
                              for m, bits in dict(data.get("method_bits") or {}).items()},
                hparam_draws=hparam_draws)


def _parse_hparam_draws(value: Any, tasks: list[GridTask]) -> dict[str, int]:
    """``{profile: settings}``: DomainBed's random search needs domain-generalization tasks (its
    distributions are per DG suite) and at least one setting (setting 0, the recipe itself)."""
    from benchmarks.data.domaingen import is_suite

    fits = isinstance(value, dict) and set(value) <= set(PROFILES) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value.values())
    if not fits:
        raise ValueError(f"hparam_draws must map profiles ({', '.join(PROFILES)}) to a number of settings "
                         f">= 1, got {value!r}")
    if value:
        other = [t.task.dataset for t in tasks if not is_suite(t.task.dataset)]
        if other:
            raise ValueError(f"hparam_draws draws DomainBed's hyper-parameters for domain-generalization "
                             f"suites only; task dataset {other[0]!r} is not one")
    return {str(k): int(n) for k, n in value.items()}


def _parse_tta(value: Any, where: str) -> TtaGrid | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"methods", "parents", "streams"} <= set(value) \
            or not set(value) <= TTA_KEYS:
        raise GridError(f"malformed {where}: 'tta' needs the keys methods, parents, streams (and optionally "
                        f"hparams); got {sorted(value) if isinstance(value, dict) else value!r}")
    streams = value["streams"]
    if not isinstance(streams, dict) or not set(streams) <= set(PROFILES):
        raise GridError(f"malformed {where}: tta streams must map profiles ({', '.join(PROFILES)}) "
                        "to stream keys")
    return TtaGrid(methods=tuple(value["methods"]), parents=tuple(value["parents"]),
                   streams={k: dict(v or {}) for k, v in streams.items()},
                   hparams=dict(value.get("hparams") or {}))


def _parse_layer_policy(value: Any, where: str) -> dict[str, str] | None:
    """``paper`` -> None (each method's default); a ``{first, last}`` mapping -> itself, validated."""
    if value == PAPER_POLICY:
        return None
    modes = ("same", "8bit", "fp")
    fits = isinstance(value, dict) and set(value) == {"first", "last"} and set(value.values()) <= set(modes)
    if not fits:
        raise GridError(f"malformed {where}: layer_policy {value!r}; valid: {PAPER_POLICY!r} or "
                        f"{{first: MODE, last: MODE}} with MODE one of {', '.join(modes)}")
    return {"first": str(value["first"]), "last": str(value["last"])}


def _parse_profile_hparams(value: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(value, dict) or not set(value) <= set(PROFILES):
        raise ValueError(f"profile_hparams must map profiles ({', '.join(PROFILES)}) to per-method "
                         f"hyper-parameters, got {value!r}")
    for profile, methods in value.items():
        if not isinstance(methods, dict) or not all(isinstance(h, dict) for h in methods.values()):
            raise ValueError(f"profile_hparams {profile!r} must map methods to hyper-parameter mappings")
    return {profile: {m: dict(h) for m, h in methods.items()} for profile, methods in value.items()}


def _parse_profiles(name: str, profiles: Any) -> dict[str, dict[str, Recipe]]:
    if not isinstance(profiles, dict) or not set(profiles) <= set(PROFILES) or not profiles:
        raise ValueError(f"recipe {name!r} must map profiles ({', '.join(PROFILES)}) to fp/qat recipes")
    out = {}
    for profile, pair in profiles.items():
        if not isinstance(pair, dict) or set(pair) != {"fp", "qat"}:
            raise ValueError(f"recipe {name!r} profile {profile!r} needs exactly the keys 'fp' and 'qat'")
        out[profile] = {kind: Recipe.from_dict(dict(values)) for kind, values in pair.items()}
    return out


def _parse_task(entry: Any, recipes: dict) -> GridTask:
    if not isinstance(entry, dict) or "dataset" not in entry:
        raise ValueError(f"each task needs a 'dataset', got {entry!r}")
    unknown = sorted(set(entry) - TASK_KEYS)
    if unknown:
        raise ValueError(f"unknown task key {unknown[0]!r}; valid: {', '.join(sorted(TASK_KEYS))}")
    if entry.get("recipe") not in recipes:
        raise ValueError(f"task {entry['dataset']!r} names recipe {entry.get('recipe')!r}; "
                         f"valid: {', '.join(recipes)}")
    task = TaskSpec(dataset=entry["dataset"], target=entry.get("target"),
                    protocol=entry.get("protocol", "standard"),
                    val_fraction=float(entry.get("val_fraction", 0.1)),
                    test_subsample=entry.get("test_subsample"), image_size=entry.get("image_size"))
    archs = entry.get("archs")
    if not isinstance(archs, list) or not archs:
        raise ValueError(f"task {entry['dataset']!r} needs a non-empty 'archs' list")
    profiles = entry.get("profiles")
    if profiles is not None and (not isinstance(profiles, list) or not set(profiles) <= set(PROFILES)):
        raise ValueError(f"task {entry['dataset']!r} profiles {profiles!r}; "
                         f"valid: a list of {', '.join(PROFILES)}")
    method_bits = {str(m): [str(b) for b in bits] for m, bits in dict(entry.get("method_bits") or {}).items()}
    return GridTask(task, tuple(archs), entry["recipe"], tuple(profiles) if profiles else None,
                    dict(entry.get("stream") or {}), method_bits)
