"""Turn registered datasets into a :class:`TaskData`: what one run trains and evaluates on.

* single dataset: ``build_task("cifar10-lt-r100")`` -> one labelled source (train minus a stratified
  validation split), no targets, ``tests = {name: test}``.
* source -> target: ``build_task("mnist", "mnistm-synth")`` -> labelled source, *unlabelled* target train
  (labels stored as -1), ``tests = {source: .., target: ..}``, headline = target.
* multi-source: ``build_multi_source_task(["mnist", "svhn"], ["mnistm-synth"])`` and the leave-one-domain-out
  helper ``leave_one_domain_out(domains, held_out)``.

All domains of a task are converted once, on uint8 tensors, to a common channel count (3 when any domain is
RGB; grey is replicated) and size (the first source's registered size unless given).
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from benchmarks.data.base import DatasetInfo, DomainSplits, ImageTensors, TaskData
from benchmarks.data.registry import dataset_info, get_spec, load_domain, parse_name
from benchmarks.data.splits import concat, convert_split, stratified_split

PROTOCOLS = ("standard", "80/20")
UNLABELLED = -1  # label value of every target training image: the trainer must never see target labels


def _norm(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    return (sum(values) / len(values),) * channels  # RGB statistics collapsed for a grey task


def _split_domain(name: str, splits: DomainSplits, protocol: str, split_seed: int,
                  force_8020: bool = False) -> DomainSplits:
    """Apply the split protocol. "80/20" (AlignQ's protocol, see docs/datasets.md): pool the domain's images
    and hold out a stratified 20 % per class as its test split. Domains without an official test split
    (Office-31) pool just their train split (their loader returns train == test == all images)."""
    if protocol == "standard" and not force_8020:
        return splits
    pooled = concat([splits.train, splits.test]) if get_spec(name).native_test else splits.train
    train, test = stratified_split(pooled, 0.2, split_seed)
    return DomainSplits(splits.name, train, test)


def _unlabelled(split: ImageTensors) -> ImageTensors:
    return ImageTensors(split.images, torch.full_like(split.labels, UNLABELLED))


def build_multi_source_task(sources: Sequence[str], targets: Sequence[str] = (), *,
                            root: str | os.PathLike | None = None, seed: int = 0, val_fraction: float = 0.1,
                            channels: int | None = None, size: tuple[int, int] | None = None,
                            protocol: str = "standard", split_seed: int = 1, download: bool = False,
                            verify_md5: bool = True, primary_test: str | None = None,
                            augment: str | None = None, options: dict[str, dict] | None = None) -> TaskData:
    """General task builder (``build_task`` is the one/two-domain shorthand).

    ``seed`` drives the validation split and long-tail subsampling; ``split_seed`` the 80/20 protocol split
    (fixed by default, as in AlignQ, so that all run seeds share one test split). Validation images are
    carved, stratified, from each source's training split, never from a test split and never from a target.
    ``options`` maps a dataset name to extra loader options, e.g. ``{"syndigits-synth": {"n_train": 5000}}``.
    """
    if not sources:
        raise ValueError("a task needs at least one source dataset")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; valid: {', '.join(PROTOCOLS)}")
    names = list(sources) + list(targets)
    if protocol == "80/20" and any(parse_name(n)[1] for n in names):
        raise ValueError("protocol '80/20' pools train and test images, which would undo a long-tailed "
                         "profile; long-tailed datasets use the 'standard' protocol")
    if len(set(names)) != len(names):
        raise ValueError(f"a domain appears twice in {names}")
    # validates every name before loading anything
    infos: list[DatasetInfo] = [dataset_info(n) for n in names]
    k = infos[0].num_classes
    if any(i.num_classes != k for i in infos):
        raise ValueError(
            f"domains disagree on the number of classes: {[(i.name, i.num_classes) for i in infos]}"
        )
    channels = channels or (3 if any(i.channels == 3 for i in infos) else 1)
    size = tuple(size) if size else tuple(infos[0].size)
    single = not targets and len(sources) == 1

    def load(name: str) -> DomainSplits:
        raw = load_domain(name, root, seed=seed, download=download, verify_md5=verify_md5, size=size,
                          **(options or {}).get(name, {}))
        # A lone domain without an official test split must not be tested on its own training images.
        d = _split_domain(name, raw, protocol, split_seed,
                          force_8020=single and not get_spec(name).native_test)
        return DomainSplits(name, convert_split(d.train, channels, size),
                            convert_split(d.test, channels, size))

    src_domains, vals = [], []
    for i, name in enumerate(sources):
        d = load(name)
        train, val = stratified_split(d.train, val_fraction, seed + 7919 * i)
        src_domains.append(DomainSplits(name, train, d.test))
        vals.append(val)
    tgt_domains = []
    for name in targets:
        d = load(name)
        tgt_domains.append(DomainSplits(name, _unlabelled(d.train), d.test))

    counts = [sum(c) for c in zip(*(d.train.class_counts(k) for d in src_domains))]
    head = infos[0]
    primary = primary_test or (targets[0] if targets else sources[0])
    tests = {d.name: d.test for d in src_domains + tgt_domains}
    if primary not in tests:
        raise ValueError(f"primary_test '{primary}' is not one of {sorted(tests)}")
    lt = {n: parse_name(n)[1] for n in sources}
    notes = {"protocol": "80/20" if protocol == "80/20" or (single and not get_spec(sources[0]).native_test)
             else "standard", "seed": seed, "split_seed": split_seed, "val_fraction": val_fraction,
             "provenance": {i.name: i.provenance for i in infos},
             "long_tail": {n: {"rho": r.rho, "profile": r.profile} for n, r in lt.items() if r is not None},
             "target_labels": "target train labels are -1 by construction; true labels exist only in tests"}
    return TaskData(
        name="+".join(sources) + ("->" + "+".join(targets) if targets else ""),
        num_classes=k, channels=channels, size=size,
        mean=_norm(head.mean, channels), std=_norm(head.std, channels),
        sources=src_domains, targets=tgt_domains, val=concat(vals), tests=tests, primary_test=primary,
        train_class_counts=counts, augment=augment or get_spec(sources[0]).augment, notes=notes)


def build_task(dataset: str, target: str | None = None, *, root: str | os.PathLike | None = None,
               seed: int = 0, val_fraction: float = 0.1, channels: int | None = None,
               size: tuple[int, int] | None = None, trial: int | None = None, **kwargs) -> TaskData:
    """One dataset (``target=None``) or a source -> target pair. Extra keyword arguments (``protocol``,
    ``split_seed``, ``download``, ``verify_md5``, ``augment``, ``options``) go to
    :func:`build_multi_source_task`. A domain-generalization suite (``rotated-mnist``, ...) with a held-out
    ``target`` is its leave-domain-out task (``benchmarks/data/domaingen.py``; ``trial`` fixes its
    domains)."""
    from benchmarks.data.domaingen import build_domaingen_task, is_suite

    if is_suite(dataset):
        return build_domaingen_task(dataset, target, root=root, seed=seed, trial=trial,
                                    download=kwargs.get("download", False))
    if trial is not None:
        raise ValueError(f"trial={trial} applies only to domain-generalization suites, not {dataset!r}")
    return build_multi_source_task([dataset], [target] if target else [], root=root, seed=seed,
                                   val_fraction=val_fraction, channels=channels, size=size, **kwargs)


def leave_one_domain_out(domains: Sequence[str], held_out: str, **kwargs) -> TaskData:
    """Multi-source task: every domain except ``held_out`` is a labelled source; ``held_out`` is the
    (unlabelled) target and the headline test."""
    if held_out not in domains:
        raise ValueError(f"held-out domain '{held_out}' is not one of {list(domains)}")
    return build_multi_source_task([d for d in domains if d != held_out], [held_out], **kwargs)
