"""Loaders for user-provided datasets distributed as folders: MNIST-M, SynDigits, Office-31.

Accepted layouts (see docs/datasets.md):

* MNIST-M under ``<root>/mnistm/`` (or ``<root>/mnist_m/``): the original archive
  (``mnist_m_train/*.png`` + ``mnist_m_train_labels.txt`` with lines ``00000000.png 5``, same for test), or an
  ImageFolder layout ``{train,test}/<0..9>/*.png``.
* SynDigits under ``<root>/syndigits/``: the published ``synth_{train,test}_32x32.mat`` (SVHN-style ``X``
  (32,32,3,N) uint8, ``y`` (N,1); 10 means 0), or ImageFolder ``{train,test}/<0..9>/*``.
* Office-31: ``<root>/office31/<domain>/images/<class>/*.jpg`` as distributed. No official test split: the
  loader returns train == test == all images (tasks.py applies the protocol).

Decoded tensors are cached under ``<root>/cache/`` keyed by a fingerprint of the files and the size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.cache import cached, folder_fingerprint
from benchmarks.data.folders import load_image_folder

LAYOUT_VERSION = 1


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _pack(train: ImageTensors, test: ImageTensors) -> dict:
    return {"train_images": train.images, "train_labels": train.labels,
            "test_images": test.images, "test_labels": test.labels}


def _unpack(name: str, d: dict) -> DomainSplits:
    return DomainSplits(name, ImageTensors(d["train_images"], d["train_labels"]),
                        ImageTensors(d["test_images"], d["test_labels"]))


def _labels_file_split(folder: Path, split: str, size: tuple[int, int]) -> ImageTensors:
    """Original MNIST-M archive: ``mnist_m_<split>/`` images listed in ``mnist_m_<split>_labels.txt``."""
    listing = folder / f"mnist_m_{split}_labels.txt"
    if not listing.exists():
        raise FileNotFoundError(f"MNIST-M labels file not found at {listing}")
    images, labels = [], []
    for line in listing.read_text().split("\n"):
        if not line.strip():
            continue
        fname, label = line.split()
        with Image.open(folder / f"mnist_m_{split}" / fname) as im:
            im = im.convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            images.append(np.asarray(im))
        labels.append(int(label))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(x, torch.tensor(labels))


def load_mnistm(root: Path, *, download: bool = False, verify_md5: bool = True,
                size: tuple[int, int] = (28, 28)) -> DomainSplits:
    folder = _first_dir(root, ("mnistm", "mnist_m", "MNIST-M"))
    if folder is None:
        raise FileNotFoundError(f"MNIST-M not found at {root / 'mnistm'}; download mnist_m.tar.gz (Ganin & "
                                "Lempitsky) and extract it there, or use the offline 'mnistm-synth'")
    if download:
        raise ValueError("MNIST-M has no official download URL for torchvision; place the files yourself")

    def build() -> dict:
        if (folder / "train").is_dir():
            return _pack(*(load_image_folder(folder / s, size, 10) for s in ("train", "test")))
        return _pack(*(_labels_file_split(folder, s, size) for s in ("train", "test")))

    key = {"v": LAYOUT_VERSION, "files": folder_fingerprint(folder), "size": list(size)}
    return _unpack("mnistm", cached(root, "mnistm", key, build))


def _mat_split(path: Path) -> ImageTensors:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    labels = torch.as_tensor(mat["y"].astype(np.int64).reshape(-1))
    labels[labels == 10] = 0  # SVHN convention, used by the SynDigits .mat files too
    return ImageTensors(torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))), labels)


def load_syndigits(root: Path, *, download: bool = False, verify_md5: bool = True,
                   size: tuple[int, int] = (32, 32)) -> DomainSplits:
    folder = _first_dir(root, ("syndigits", "SynDigits", "SYN", "synth"))
    expected = root / "syndigits" / "synth_train_32x32.mat"
    if folder is None:
        raise FileNotFoundError(f"SynDigits not found at {expected}; place synth_{{train,test}}_32x32.mat "
                                "(Ganin & Lempitsky) there, or use the offline 'syndigits-synth'")
    if download:
        raise ValueError("SynDigits has no torchvision download; place the files yourself")
    if (folder / "synth_train_32x32.mat").exists():
        def build() -> dict:
            return _pack(*(_mat_split(folder / f"synth_{s}_32x32.mat") for s in ("train", "test")))
    elif (folder / "train").is_dir():
        def build() -> dict:
            return _pack(*(load_image_folder(folder / s, size, 10) for s in ("train", "test")))
    else:
        raise FileNotFoundError(f"SynDigits not found at {folder / 'synth_train_32x32.mat'} "
                                f"(nor an image folder at {folder / 'train'})")
    key = {"v": LAYOUT_VERSION, "files": folder_fingerprint(folder), "size": list(size)}
    return _unpack("syndigits", cached(root, "syndigits", key, build))


def office31_dir(root: Path, domain: str) -> Path:
    return root / "office31" / domain / "images"


def load_office31(root: Path, *, download: bool = False, verify_md5: bool = True,
                  size: tuple[int, int] = (224, 224), domain: str = "amazon") -> DomainSplits:
    folder = office31_dir(root, domain)
    if not folder.is_dir():
        raise FileNotFoundError(f"Office-31 {domain} not found at {folder}; extract the Office-31 archive so "
                                f"that {folder}/<class>/*.jpg exist")
    if download:
        raise ValueError("Office-31 has no torchvision download; place the files yourself")

    def build() -> dict:
        all_images = load_image_folder(folder, size, 31)
        return _pack(all_images, all_images)

    key = {"v": LAYOUT_VERSION, "files": folder_fingerprint(folder), "size": list(size)}
    return _unpack(f"office31/{domain}", cached(root, f"office31-{domain}", key, build))
