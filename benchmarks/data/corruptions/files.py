"""Released corruption benchmarks, when a user has them: CIFAR-10-C / CIFAR-100-C (``<corruption>.npy`` with
every severity stacked, severity 1 first, plus ``labels.npy``) and ImageNet-C folders
(``<root>/<corruption>/<severity>/<wnid>/<image>``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.data.base import ImageTensors
from benchmarks.data.corruptions.apply import SEVERITIES, check_corruption
from benchmarks.data.folders import load_image_folder


def load_cifar_c(directory: str | Path, corruption: str, severity: int) -> ImageTensors:
    """The images of one severity from ``<directory>/<corruption>.npy`` (N x 5 stacked, uint8 NHWC)."""
    check_corruption(corruption, severity)
    directory = Path(directory)
    images_path, labels_path = directory / f"{corruption}.npy", directory / "labels.npy"
    for path in (images_path, labels_path):
        if not path.exists():
            raise FileNotFoundError(f"corruption file not found: {path}; expected <dir>/<corruption>.npy and "
                                    "<dir>/labels.npy as released (CIFAR-10-C / CIFAR-100-C)")
    images = np.load(images_path, mmap_mode="r")
    labels = np.load(labels_path)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) % len(SEVERITIES) \
            or len(labels) != len(images):
        raise ValueError(f"{images_path}: expected (5N, H, W, 3) images and {labels_path} with 5N labels, "
                         "got "
                         f"{images.shape} and {labels.shape}")
    per = len(images) // len(SEVERITIES)
    window = slice((severity - 1) * per, severity * per)
    x = torch.from_numpy(np.array(images[window])).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(x.to(torch.uint8), torch.from_numpy(labels[window].astype(np.int64)))


def load_imagenet_c(directory: str | Path, corruption: str, severity: int,
                    size: tuple[int, int] = (224, 224)) -> ImageTensors:
    """One corruption and severity of ImageNet-C (class folders sorted by name, as ImageFolder does)."""
    check_corruption(corruption, severity)
    return load_image_folder(Path(directory) / corruption / str(severity), size)
