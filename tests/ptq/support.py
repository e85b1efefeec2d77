"""Small builders for the PTQ tests: a network, its FP copy prepared for a PTQ method, a calibration batch."""
from __future__ import annotations

import copy

import torch

from benchmarks.models import build_model
from methods import get_method, prepare


def prepared(method: str, w_bits: int, a_bits: int, arch: str = "dann_digits", seed: int = 0, size: int = 28,
             **hparams):
    """(quantized net, FP copy, method, calibration batch) on random 1×size×size inputs."""
    torch.manual_seed(seed)
    fp = build_model(arch, 10, in_channels=1, input_size=(size, size)).eval()
    net = copy.deepcopy(fp)
    meth = get_method(method, **hparams)
    prepare(net, meth, w_bits, a_bits)
    calib = torch.randn(64, 1, size, size)
    return net, fp, meth, calib


def quiet(_: str) -> None:
    pass
