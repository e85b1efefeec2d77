"""RotatedMNIST and ColoredMNIST built offline from real MNIST, as DomainBed builds them.

DomainBed (Gulrajani & Lopez-Paz 2021, ``domainbed/datasets.py``, ``MultipleEnvironmentMNIST``):

1. MNIST train (60,000) and test (10,000) concatenated: 70,000 uint8 28×28 images;
2. shuffled with ``torch.randperm`` from a generator seeded with the *construction seed*;
3. domain ``i`` takes the images ``i::E`` (E domains);
4. RotatedMNIST rotates domain ``i`` by its angle (PIL, counter-clockwise, fill 0, no expansion; BICUBIC as in
   the commit that produced the published table, BILINEAR at DomainBed's HEAD: ``interpolation``);
   ColoredMNIST makes a binary label (digit < 5), flips it with probability 0.25, draws a colour
   ``c = label XOR Bernoulli(e)`` and keeps the digit only in channel ``c`` of two (2×28×28; DomainBed's 2×
   subsampling to 14×14 is commented out in its code; ``subsample=True`` applies it);
5. each domain is split 80/20 into ``in`` / ``out`` with DomainBed's ``split_dataset``: a NumPy
   ``RandomState(seed_hash(trial_seed, i))`` permutation whose first 20 % are ``out``.

DomainBed seeds step 2 and the colour draws from the *run* seed, so each run (and each algorithm) sees other
domains. Here the construction seed is the trial seed by default, so every method and every run seed of one
trial sees the same domains (``docs/datasets.md``); with the same seed the random draws are DomainBed's own
(the same generator calls in the same order). Images stay uint8: ToTensor's x/255 is the task's
normalisation (mean 0, std 1).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.cache import cached

ROTATED_ANGLES = (0, 15, 30, 45, 60, 75)
COLOUR_FLIP = {"+90%": 0.1, "+80%": 0.2, "-90%": 0.9}  # ColoredMNIST domain -> colour-flip probability
LABEL_NOISE = 0.25
HOLDOUT_FRACTION = 0.2
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
BUILD_VERSION = 1  # bump when the construction changes: cached tensors are keyed by it


@dataclass
class DomainData:
    """One DomainBed environment: its ``in`` (80 %) and ``out`` (20 %) splits."""

    name: str
    inside: ImageTensors
    out: ImageTensors


def seed_hash(*args: object) -> int:
    """DomainBed's ``misc.seed_hash``: md5 of ``str(args)`` modulo 2^31."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)


def split_in_out(data: ImageTensors, trial_seed: int, domain_index: int,
                 holdout: float = HOLDOUT_FRACTION) -> tuple[ImageTensors, ImageTensors]:
    """DomainBed's ``split_dataset(env, int(len(env)*holdout), seed_hash(trial_seed, env_i))``: (in, out)."""
    keys = list(range(len(data)))
    np.random.RandomState(seed_hash(trial_seed, domain_index)).shuffle(keys)
    n_out = int(len(data) * holdout)
    order = torch.tensor(keys, dtype=torch.long)
    return data.subset(order[n_out:]), data.subset(order[:n_out])


def deal(n: int, num_domains: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The pooled indices of each domain: one ``randperm(n)`` from ``generator``, then every E-th image."""
    order = torch.randperm(n, generator=generator)
    return [order[i::num_domains] for i in range(num_domains)]


def pooled_mnist(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from benchmarks.data.real import load_mnist

    mnist = load_mnist(root)
    images = torch.cat([mnist.train.images[:, 0], mnist.test.images[:, 0]])  # (70000, 28, 28) uint8
    return images, torch.cat([mnist.train.labels, mnist.test.labels])


def rotate(images: torch.Tensor, angle: float, interpolation: str) -> torch.Tensor:
    """(N, 28, 28) uint8 rotated counter-clockwise about the centre, fill 0, same size (torchvision's
    ``rotate`` on a PIL image, which is what DomainBed calls)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"invalid interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    resample = INTERPOLATIONS[interpolation]
    out = [np.asarray(Image.fromarray(img).rotate(angle, resample=resample, fillcolor=0))
           for img in images.numpy()]
    return torch.from_numpy(np.stack(out)) if out else images.clone()


def _bernoulli(p: float, n: int, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).long()


def colour(images: torch.Tensor, digits: torch.Tensor, flip: float, generator: torch.Generator,
           subsample: bool = False) -> ImageTensors:
    """DomainBed's ``color_dataset``: noisy binary label, colour = label XOR Bernoulli(flip), the digit
    kept in channel ``colour`` only. The two Bernoulli draws come from ``generator`` in DomainBed's order."""
    if subsample:
        images = images[:, ::2, ::2]
    labels = (digits < 5).long() ^ _bernoulli(LABEL_NOISE, len(digits), generator)
    colours = labels ^ _bernoulli(flip, len(digits), generator)
    stacked = torch.stack([images, images], dim=1).clone()
    stacked[torch.arange(len(images)), 1 - colours] = 0
    return ImageTensors(stacked.contiguous(), labels)


def build_domains(kind: str, root: Path, seed: int, trial_seed: int, interpolation: str = "bicubic",
                  subsample: bool = False) -> list[DomainData]:
    """All domains of ``kind`` (``rotated`` | ``colored``): the 70,000 images shuffled with ``seed``, dealt
    round-robin, transformed, and split in/out with ``trial_seed``."""
    images, digits = pooled_mnist(root)
    generator = torch.Generator().manual_seed(seed)
    names = [str(a) for a in ROTATED_ANGLES] if kind == "rotated" else list(COLOUR_FLIP)
    domains = []
    for i, (name, index) in enumerate(zip(names, deal(len(images), len(names), generator))):
        part, part_digits = images[index], digits[index]
        if kind == "rotated":
            data = ImageTensors(rotate(part, float(name), interpolation).unsqueeze(1), part_digits)
        else:
            data = colour(part, part_digits, COLOUR_FLIP[name], generator, subsample)
        inside, out = split_in_out(data, trial_seed, i)
        domains.append(DomainData(name, inside, out))
    return domains


def load_domains(kind: str, root: Path, seed: int, trial_seed: int, interpolation: str = "bicubic",
                 subsample: bool = False, cache: bool = True) -> list[DomainData]:
    """``build_domains`` through the on-disk tensor cache (a rotated build takes seconds; runs reuse it)."""
    if kind not in ("rotated", "colored"):
        raise ValueError(f"invalid DomainBed MNIST kind {kind!r}; valid: rotated, colored")
    key = {"v": BUILD_VERSION, "kind": kind, "seed": seed, "trial": trial_seed,
           "interpolation": interpolation if kind == "rotated" else None, "subsample": subsample,
           "torch": torch.__version__.split("+")[0]}

    def build() -> dict:
        out = {}
        for d in build_domains(kind, root, seed, trial_seed, interpolation, subsample):
            out.update({f"{d.name}|in|x": d.inside.images, f"{d.name}|in|y": d.inside.labels,
                        f"{d.name}|out|x": d.out.images, f"{d.name}|out|y": d.out.labels})
        return out

    tensors = cached(root, f"domainbed-{kind}-mnist", key, build, enabled=cache)
    names = list(dict.fromkeys(k.split("|")[0] for k in tensors))
    return [DomainData(n, ImageTensors(tensors[f"{n}|in|x"], tensors[f"{n}|in|y"]),
                       ImageTensors(tensors[f"{n}|out|x"], tensors[f"{n}|out|y"])) for n in names]


_MEMO: dict[tuple, list[DomainData]] = {}


def load_domainbed_mnist(root: Path, *, download: bool = False, verify_md5: bool = True, size=None,
                         kind: str, domain: str, construction_seed: int = 0, trial_seed: int = 0,
                         interpolation: str = "bicubic", subsample: bool = False) -> DomainSplits:
    """Registry loader of one domain: ``train`` = its ``in`` split, ``test`` = its ``out`` split. The suite is
    built once per process and seeds (each of its domains is loaded in turn)."""
    key = (str(root), kind, construction_seed, trial_seed, interpolation, subsample)
    if key not in _MEMO:
        _MEMO.clear()  # one suite in memory at a time
        _MEMO[key] = load_domains(kind, root, construction_seed, trial_seed, interpolation, subsample)
    found = {d.name: d for d in _MEMO[key]}
    if domain not in found:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(found)}")
    return DomainSplits(f"{kind}-mnist/{domain}", found[domain].inside, found[domain].out)
