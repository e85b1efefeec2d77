"""DomainBed's random hyper-parameter search: the draws of ``domainbed/hparams_registry.py`` for ERM.

DomainBed trains every (algorithm, dataset, test domain, trial) with 20 hyper-parameter settings: setting 0 is
the defaults, setting h > 0 is ``random_hparams(algorithm, dataset, seed_hash(h, trial))``, where each
hyper-parameter ``name`` draws from its own ``numpy.random.RandomState(seed_hash(that seed, name))``. We
reproduce those draws exactly (the test compares them with values printed by DomainBed's own registry), so
setting h of trial t here is DomainBed's setting h of trial t. Drawn, with DomainBed's distributions:

| | RotatedMNIST, ColoredMNIST | DomainNet | other image suites |
|---|---|---|---|
| lr | 10^U(−4.5, −2.5) | 10^U(−5, −3.5) | 10^U(−5, −3.5) |
| batch size (per domain) | int(2^U(3, 9)) | int(2^U(3, 5)) | int(2^U(3, 5.5)) |
| weight decay | 0 | 10^U(−6, −2) | 10^U(−6, −2) |

A drawn setting replaces ``lr``, ``batch_size`` and ``weight_decay`` of both the FP (ERM) recipe and the QAT
recipe of the run, so a quantized run continues from the ERM run of the same setting (QT-DoG quantizes within
one training run). Not drawn: DomainBed's ``resnet_dropout`` (our networks keep their own), and the methods'
own hyper-parameters (DomainBed has no distributions for them). Setting 0 is the grid's recipe unchanged, so
its runs are the runs of the grid without a sweep (same run ids).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.run.spec import Recipe, TaskSpec

SMALL_IMAGE_SUITES = ("rotated-mnist", "colored-mnist")


def seed_hash(*args: Any) -> int:
    """DomainBed's ``misc.seed_hash``: an integer from the ``str`` of the arguments' tuple."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)


def _family(suite: str) -> str:
    base = suite.split("@")[0]  # a suite's variants (pacs@32, pacs-noaug, ...) draw as the suite
    for variant in ("-runshuffle", "-bilinear", "-noaug"):
        base = base.removesuffix(variant)
    if base in SMALL_IMAGE_SUITES:
        return "small"
    return "domainnet" if base == "domainnet" else "images"


def domainbed_draw(suite: str, setting: int, trial: int) -> dict[str, float | int]:
    """DomainBed's hyper-parameter setting ``setting`` (≥ 1) of ``trial`` for ERM on ``suite``:
    ``{"lr", "batch_size", "weight_decay"}``."""
    if setting < 1:
        raise ValueError(f"invalid DomainBed setting {setting}; setting 0 is the defaults, draws start at 1")
    seed = seed_hash(setting, trial)

    def draw(name: str) -> np.random.RandomState:
        return np.random.RandomState(seed_hash(seed, name))

    family = _family(suite)
    if family == "small":
        return {"lr": float(10 ** draw("lr").uniform(-4.5, -2.5)),
                "batch_size": int(2 ** draw("batch_size").uniform(3, 9)), "weight_decay": 0.0}
    high = 5 if family == "domainnet" else 5.5
    return {"lr": float(10 ** draw("lr").uniform(-5, -3.5)),
            "batch_size": int(2 ** draw("batch_size").uniform(3, high)),
            "weight_decay": float(10 ** draw("weight_decay").uniform(-6, -2))}


def setting_recipes(recipes: dict[str, Recipe], task: TaskSpec, setting: int,
                    seed: int) -> dict[str, Recipe]:
    """The FP and QAT recipes of hyper-parameter ``setting`` of a run of ``task`` with ``seed`` (the trial
    unless the task fixes one): unchanged for setting 0, DomainBed's draw otherwise."""
    if setting == 0:
        return recipes
    trial = task.trial if task.trial is not None else seed
    drawn = domainbed_draw(task.dataset, setting, trial)
    return {kind: replace(recipe, **drawn) for kind, recipe in recipes.items()}
