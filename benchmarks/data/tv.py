"""The one place that imports torchvision.

Every torchvision wheel on PyPI is a CUDA build; with a CPU-only torch its ``_meta_registrations`` fails with
``operator torchvision::nms does not exist`` (seen with torch 2.13.0+cpu and torchvision 0.27-0.29). When, and
only when, that happens we define the two op schemas it expects and import again. Datasets, transforms and
models then work; only ``torchvision.ops`` stays unusable, which classification does not need. Everywhere
else: ``from benchmarks.data.tv import torchvision``.
"""
from __future__ import annotations

import sys

import torch

_schema_library = None  # must stay alive for the schemas to stay defined


def _drop_half_imported() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _import_torchvision():
    global _schema_library
    try:
        import torchvision as tv

        return tv
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    _drop_half_imported()
    _schema_library = torch.library.Library("torchvision", "DEF")
    _schema_library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _schema_library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision as tv

    return tv


torchvision = _import_torchvision()
datasets = torchvision.datasets
models = torchvision.models
transforms = torchvision.transforms
