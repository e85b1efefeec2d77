"""Domain-generalization suites and their leave-domain-out tasks (DomainBed's protocol).

A *suite* is a family of domains registered in the data registry as ``<suite>/<domain>``
(``rotated-mnist/15``, ``colored-mnist/-90%``, ``pacs/S``). Each domain's loader returns its DomainBed
``in`` split as ``train`` and its ``out`` split (20 %) as ``test``. A task names the suite and the held-out
test domain(s):
``TaskSpec(dataset="rotated-mnist", target="15")``; two held-out domains (``target="15,30"``) are the extra
runs of leave-one-domain-out validation.

What a run sees (``TaskData``):

* ``sources``: every other domain, labelled, trained on its ``in`` split (per-domain batches: the trainer's
  domain parts); no target images at training time (``targets`` is empty: generalization, not adaptation);
* ``val``: empty. DomainBed's validation data are the training domains' ``out`` splits, which are already
  scored one by one in ``tests`` (pooling them again would evaluate every image twice); the selection rules
  of ``analysis/domainbed.py`` read them there. The trainer's own ``val_acc`` is therefore None, and Optuna
  tuning (which drops ``tests``) has nothing to tune on for these tasks;
* ``tests``: ``<domain>:out`` for every domain and ``<domain>:in`` for each held-out one (``:in`` of the
  training domains too with ``eval_train_in``), so each metrics row holds what DomainBed's three selection
  rules need (``analysis/domainbed.py``);
* ``primary_test``: ``<first held-out>:in``, DomainBed's reported test accuracy.

The construction seed of the MNIST suites is the *trial* seed (the run's seed unless the task fixes a trial),
so every method and every run seed of a trial sees the same domains; suites named ``...-runshuffle`` seed the
construction from the run seed instead, as DomainBed does.

The image suites (``pacs``, ``vlcs``, ``officehome``, ``terraincognita``, ``domainnet``) train with
DomainBed's augmentation (``dg_augment.py``: the task's ``augment="domainbed"``) and evaluate the 224×224
images as decoded. Two name modifiers make variants of them: ``-noaug`` (DomainBed's
``data_augmentation=False``) and ``@<px>`` (images decoded at px×px instead of 224: CPU smoke tests only),
e.g. ``pacs@32``, ``pacs-noaug@64``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

import torch

from benchmarks.data.base import DomainSplits, ImageTensors, TaskData
from benchmarks.data.domainbed_images import IMAGE_SUITES
from benchmarks.data.registry import dataset_info, load_domain
from benchmarks.data.splits import convert_split


@dataclass(frozen=True)
class Suite:
    """A DG family: its domain names (in DomainBed's environment order) and fixed construction options."""

    name: str
    family: str  # registry prefix of the domain datasets: ``<family>/<domain>``
    domains: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()
    per_run_shuffle: bool = False  # seed the construction from the run seed (DomainBed) instead of the trial
    seeded: bool = True  # the loader takes construction seeds (the MNIST suites); image folders do not
    augment: str = "none"  # the training augmentation (benchmarks/data/batches.py AUGMENTS)
    size: tuple[int, int] | None = None  # decode image folders at this size instead of the registry's

    def domain_dataset(self, domain: str) -> str:
        return f"{self.family}/{domain}"


_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> None:
    _SUITES[suite.name] = suite


def available_suites() -> list[str]:
    return sorted(_SUITES)


# ``<image suite>[-noaug][@<px>]``: see the module docstring
_VARIANT = re.compile(r"^(?P<base>.+?)(?P<noaug>-noaug)?(?:@(?P<px>\d+))?$")
MIN_PX = 16  # ResNet-50 reduces by 32; below 16 px its last stages see a single padded pixel


def _variant(name: str) -> Suite | None:
    match = _VARIANT.match(name)
    base = _SUITES.get(match["base"]) if match else None
    if match is None or base is None or base.seeded or not (match["noaug"] or match["px"]):
        return None  # only image-folder suites have variants
    px = int(match["px"]) if match["px"] else None
    if px is not None and px < MIN_PX:
        return None
    return replace(base, name=name, augment="none" if match["noaug"] else base.augment,
                   size=(px, px) if px else base.size)


def is_suite(name: str) -> bool:
    return name in _SUITES or _variant(name) is not None


def get_suite(name: str) -> Suite:
    suite = _SUITES.get(name) or _variant(name)
    if suite is None:
        valid = ", ".join(available_suites())
        raise ValueError(f"unknown domain-generalization suite '{name}'; valid: {valid} (image suites also "
                         f"as <suite>-noaug, <suite>@<px> with px >= {MIN_PX})")
    return suite


def held_out_domains(suite: Suite, target: str | None) -> list[str]:
    """The held-out domains of ``target`` (``"15"`` or ``"15,30"``), validated."""
    if not target:
        raise ValueError(f"suite '{suite.name}' needs a held-out test domain as target; valid: "
                         f"{', '.join(suite.domains)}")
    held = [t.strip() for t in target.split(",")]
    for t in held:
        if t not in suite.domains:
            valid = ", ".join(suite.domains)
            raise ValueError(f"unknown domain '{t}' of suite '{suite.name}'; valid: {valid}")
    if len(set(held)) != len(held) or len(held) >= len(suite.domains):
        raise ValueError(f"invalid held-out domains {target!r} for '{suite.name}': distinct, and at least "
                         "one training domain left")
    return held


def build_domaingen_task(suite_name: str, target: str | None, *, root: str | os.PathLike | None = None,
                         seed: int = 0, trial: int | None = None, eval_train_in: bool = False,
                         download: bool = False) -> TaskData:
    """The leave-``target``-out task of a suite (see the module docstring). ``trial`` (default: ``seed``)
    fixes the domains and their in/out splits; ``seed`` is the run seed."""
    suite = get_suite(suite_name)
    held = held_out_domains(suite, target)
    trial = seed if trial is None else trial
    options: dict[str, object] = dict(suite.options)
    options["trial_seed"] = trial
    if suite.seeded:
        options["construction_seed"] = seed if suite.per_run_shuffle else trial
    info = dataset_info(suite.domain_dataset(suite.domains[0]))
    size = suite.size or tuple(info.size)
    splits: dict[str, DomainSplits] = {}
    for domain in suite.domains:
        raw = load_domain(suite.domain_dataset(domain), root, download=download, size=suite.size, **options)
        splits[domain] = DomainSplits(domain, convert_split(raw.train, info.channels, size),
                                      convert_split(raw.test, info.channels, size))
    train_domains = [d for d in suite.domains if d not in held]
    sources = [DomainSplits(suite.domain_dataset(d), splits[d].train, splits[d].test) for d in train_domains]
    tests: dict[str, ImageTensors] = {}
    for domain in suite.domains:
        tests[f"{domain}:out"] = splits[domain].test
        if domain in held or eval_train_in:
            tests[f"{domain}:in"] = splits[domain].train
    counts = [sum(c) for c in zip(*(s.train.class_counts(info.num_classes) for s in sources))]
    notes = {"protocol": "domainbed", "suite": suite.name, "held_out": held, "train_domains": train_domains,
             "trial": trial, "seed": seed, "per_run_shuffle": suite.per_run_shuffle,
             "options": {k: v for k, v in suite.options}, "provenance": info.provenance,
             "splits": "in = 80 % (train / test), out = 20 % (validation / oracle), DomainBed split_dataset"}
    if not suite.seeded:  # image suites: what the images went through
        notes.update(augment=suite.augment, size=list(size))
    return TaskData(name=f"{suite.name} (test: {','.join(held)})", num_classes=info.num_classes,
                    channels=info.channels, size=(int(size[0]), int(size[1])), mean=tuple(info.mean),
                    std=tuple(info.std), sources=sources, targets=[],
                    val=sources[0].test.subset(torch.arange(0)), tests=tests, primary_test=f"{held[0]}:in",
                    train_class_counts=counts, augment=suite.augment, notes=notes)


ROTATED_DOMAINS = ("0", "15", "30", "45", "60", "75")
COLORED_DOMAINS = ("+90%", "+80%", "-90%")
for _suffix, _shuffle in (("", False), ("-runshuffle", True)):
    register_suite(Suite(f"rotated-mnist{_suffix}", "rotated-mnist", ROTATED_DOMAINS,
                         per_run_shuffle=_shuffle))
    register_suite(Suite(f"colored-mnist{_suffix}", "colored-mnist", COLORED_DOMAINS,
                         per_run_shuffle=_shuffle))
# DomainBed's HEAD rotates with BILINEAR; the published table was made with BICUBIC (the default suite).
register_suite(Suite("rotated-mnist-bilinear", "rotated-mnist", ROTATED_DOMAINS,
                     (("interpolation", "bilinear"),)))
for _name, _suite in IMAGE_SUITES.items():  # images from folders: no construction seed
    register_suite(Suite(_name, _name, _suite.domains, seeded=False, augment="domainbed"))
