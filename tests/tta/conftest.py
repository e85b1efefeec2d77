"""Tests of corruption streams and continual test-time adaptation (benchmarks/data/corruptions, streams,
methods/tta, the TTA run kind and its grid)."""
import pytest
import torch

from benchmarks.data.registry import load_domain


@pytest.fixture(scope="session")
def digits_test() -> torch.Tensor:
    """The first 60 clean test images of the offline SynDigits-style set (real glyphs, 32x32 RGB)."""
    return load_domain("syndigits-synth").test.images[:60]
