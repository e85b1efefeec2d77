"""Run specifications and their identity.

A run is task × architecture × method × W/A bits × seed × hyper-parameters × recipe. Its identity is a hash
of the canonical spec (no paths, worker counts, devices or logging; a schema version inside), so the same
experiment always maps to the same run directory and a re-launched grid finds its finished runs.
QAT runs start from the FP run of the same task/arch/seed, whose id is part of their identity.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

SCHEMA_VERSION = 1
PROTOCOLS = ("standard", "dann", "source_only")
SCHEDULES = ("multistep", "cosine", "constant", "dann")
AMP_MODES = ("none", "bf16")
OPTIMIZERS = ("sgd", "adam")  # adam: DomainBed's protocol (lr 1e-3, no momentum/weight-decay knobs of SGD)


@dataclass(frozen=True)
class TaskSpec:
    """What is trained and evaluated: a dataset (or source) and, for domain shift, a target domain."""

    dataset: str
    target: str | None = None
    protocol: str = "standard"  # standard | dann (adversarial domain head) | source_only
    val_fraction: float = 0.1
    # Evaluate on a fixed, class-stratified subset of at most this many images per test domain (the same for
    # every run); None uses the whole test split. For quick CPU looks only: papers report full test sets.
    test_subsample: int | None = None
    # Domain-generalization suites: the trial whose seed builds the domains and their splits; None uses the
    # run seed. Set for ensemble members (several run seeds, one trial). Left out of the identity while None.
    trial: int | None = None
    # Folder-streamed datasets (imagenet; benchmarks/run/streamed.py): the side of the training crop and of
    # the evaluation centre crop; None uses the dataset's registered size (224). Left out of the identity
    # while None.
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.trial is not None:
            _check_int("trial", self.trial, low=0)
        if self.image_size is not None:
            _check_int("image_size", self.image_size, low=8)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"invalid protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.protocol == "dann" and self.target is None:
            raise ValueError("protocol 'dann' needs a target domain")
        _check_number("val_fraction", self.val_fraction, low=0.0, high=1.0, high_open=True)
        if self.test_subsample is not None:
            _check_int("test_subsample", self.test_subsample, low=1)

    @property
    def label(self) -> str:
        return self.dataset if self.target is None else f"{self.dataset}->{self.target}"


@dataclass(frozen=True)
class Recipe:
    """How a run trains. Learning-rate milestones are in epochs."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "multistep"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    steps_per_epoch: int | None = None  # cap on steps per epoch (quick profiles); None = one pass
    amp: str = "none"  # "bf16" autocast (only on CUDA)
    # Scale-out (docs/distributed.md). ``processes``: data-parallel processes, one per GPU, each with
    # batch_size / processes images of every step; part of the run id when not 1 (float reduction order and
    # per-rank method statistics change results). ``nodes``: how those processes spread over machines (layout
    # only, never in the run id). ``sync_bn``: BatchNorm statistics reduced across processes (in the run id
    # only when switched off).
    processes: int = 1
    nodes: int = 1
    sync_bn: bool = True
    # Mid-epoch checkpoints every N steps and/or every N minutes (None: at epoch ends only); never in the run
    # id: a resumed run ends with the weights of an uninterrupted one.
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    optimizer: str = "sgd"  # left out of the identity while "sgd", so existing run ids stay
    # torch.compile the network's features (benchmarks/run/compile_step.py); not bit-identical to eager, so
    # part of the run's identity, but only when true (existing run ids stay as they were).
    compile: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"invalid optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"invalid schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"invalid amp {self.amp!r}; valid: {', '.join(AMP_MODES)}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"invalid recipe compile {self.compile!r}; valid: true, false")
        _check_int("epochs", self.epochs, low=1)
        _check_int("batch_size", self.batch_size, low=1)
        _check_number("lr", self.lr, low=0.0, low_open=True)
        _check_number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _check_number("weight_decay", self.weight_decay, low=0.0)
        _check_number("gamma", self.gamma, low=0.0, low_open=True)
        _check_int("warmup_epochs", self.warmup_epochs, low=0)
        if self.steps_per_epoch is not None:
            _check_int("steps_per_epoch", self.steps_per_epoch, low=1)
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"invalid recipe milestones {self.milestones!r}; expected a list of epochs")
        for milestone in self.milestones:
            _check_int("milestones", milestone, low=1)
        _check_scale_out(self)
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class RunSpec:
    task: TaskSpec
    arch: str
    method: str
    recipe: Recipe
    w_bits: int = 32
    a_bits: int = 32
    seed: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    layer_policy: dict[str, str] | None = None  # None: the method's default
    fp_recipe: Recipe | None = None  # QAT runs: how their FP parent trains
    arch_options: dict[str, Any] = field(default_factory=dict)

    def parent(self) -> "RunSpec | None":
        """The FP run this QAT run starts from (None for FP runs)."""
        if self.method == "fp":
            return None
        if self.fp_recipe is None:
            raise ValueError(f"QAT run of method {self.method!r} needs fp_recipe (how its FP parent trains)")
        return RunSpec(task=self.task, arch=self.arch, method="fp", recipe=self.fp_recipe, seed=self.seed,
                       arch_options=self.arch_options)

    def to_dict(self) -> dict[str, Any]:
        parent = self.parent()
        return {
            "task": _task_dict(self.task),
            "arch": self.arch,
            "arch_options": dict(self.arch_options),
            "method": self.method,
            "w_bits": self.w_bits,
            "a_bits": self.a_bits,
            "seed": self.seed,
            "hparams": dict(self.hparams),
            "recipe": _recipe_dict(self.recipe),
            "layer_policy": self.layer_policy,
            "init_from": parent.run_id if parent is not None else None,
            "fp_recipe": _recipe_dict(self.fp_recipe) if self.fp_recipe is not None else None,
        }

    def identity_dict(self) -> dict[str, Any]:
        """``to_dict()`` without the recipe keys that never change results (``NOT_IDENTITY``)."""
        data = self.to_dict()
        for key in ("recipe", "fp_recipe"):
            if data[key] is not None:
                data[key] = {k: v for k, v in data[key].items() if k not in NOT_IDENTITY}
        return data

    @property
    def run_id(self) -> str:
        payload = json.dumps({"schema_version": SCHEMA_VERSION, **self.identity_dict()}, sort_keys=True,
                             default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(
            task=TaskSpec(**data["task"]),
            arch=data["arch"],
            method=data["method"],
            recipe=Recipe.from_dict(data["recipe"]),
            w_bits=int(data.get("w_bits", 32)),
            a_bits=int(data.get("a_bits", 32)),
            seed=int(data.get("seed", 0)),
            hparams=dict(data.get("hparams") or {}),
            layer_policy=data.get("layer_policy"),
            fp_recipe=Recipe.from_dict(data["fp_recipe"]) if data.get("fp_recipe") else None,
            arch_options=dict(data.get("arch_options") or {}),
        )

    @property
    def processes(self) -> int:
        """Processes (GPUs) the run trains on: more than one is data-parallel."""
        return self.recipe.processes

    @property
    def nodes(self) -> int:
        return self.recipe.nodes

    def with_(self, **changes: Any) -> "RunSpec":
        return replace(self, **changes)



# Recipe fields added after run ids were first published: written only when they differ from these defaults,
# so every earlier spec keeps its id.
LATER_DEFAULTS: dict[str, Any] = {"processes": 1, "nodes": 1, "sync_bn": True, "checkpoint_every_steps": None,
                                  "checkpoint_every_minutes": None, "optimizer": "sgd",
                                  "compile": False}
# Recipe keys that never change a run's results: kept in spec.json, left out of the run id.
NOT_IDENTITY = ("nodes", "checkpoint_every_steps", "checkpoint_every_minutes")


def _task_dict(task: TaskSpec) -> dict[str, Any]:
    data = asdict(task)
    for key in ("trial", "image_size"):  # fields added later stay out of the identity at their default
        if data[key] is None:
            del data[key]
    return data


def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    data = asdict(recipe)
    data["milestones"] = list(recipe.milestones)
    for key, default in LATER_DEFAULTS.items():
        if data[key] == default:
            del data[key]
    return data


def _check_scale_out(recipe: Recipe) -> None:
    _check_int("processes", recipe.processes, low=1)
    _check_int("nodes", recipe.nodes, low=1)
    if recipe.processes % recipe.nodes:
        raise ValueError(f"invalid nodes {recipe.nodes!r}; expected a divisor of "
                         f"processes={recipe.processes}")
    if recipe.batch_size % recipe.processes:
        raise ValueError(f"invalid batch_size {recipe.batch_size!r}; expected a multiple of "
                         f"processes={recipe.processes} (each process takes an equal share)")
    if not isinstance(recipe.sync_bn, bool):
        raise ValueError(f"invalid sync_bn {recipe.sync_bn!r}; expected true or false")
    if recipe.checkpoint_every_steps is not None:
        _check_int("checkpoint_every_steps", recipe.checkpoint_every_steps, low=1)
    if recipe.checkpoint_every_minutes is not None:
        _check_number("checkpoint_every_minutes", recipe.checkpoint_every_minutes, low=0.0, low_open=True)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"invalid {name} {value!r}; expected an integer >= {low}")


def _check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> None:
    """A real number in a range; the message names the value and the range (``[0, 1)``, ``> 0``, ...)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            want = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            want = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            want = "a finite number"
        raise ValueError(f"invalid {name} {value!r}; expected {want}")
