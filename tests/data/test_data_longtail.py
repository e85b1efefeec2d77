"""Long-tail protocol: exact Cao et al. and ClimbQ counts, end to end through a fake CIFAR-10 with the real
class sizes, SynDigits-LT on the offline generator, and name parsing."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import build_task, dataset_info, load_domain
from benchmarks.data.longtail import cao_counts, climbq_counts
from benchmarks.data.registry import parse_name

C10_R100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """One data root per test session, shared by the data test files, so MNIST is staged and the default
    generated sets are built once per session (each test file still works on its own)."""
    path = tmp_path_factory.getbasetemp() / "qbench-data"
    path.mkdir(exist_ok=True)
    return path


def test_cao_counts_exact():
    assert cao_counts(5000, 10, 100) == C10_R100
    assert [sum(cao_counts(5000, 10, r)) for r in (10, 50, 100, 200)] == [20431, 13996, 12406, 11203]
    assert [sum(cao_counts(500, 100, r)) for r in (10, 50, 100, 200)] == [19573, 12608, 10847, 9502]
    assert [min(cao_counts(500, 100, r)) for r in (10, 50, 100, 200)] == [50, 10, 5, 2]
    assert cao_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert sum(cao_counts(1000, 10, 10)) == 4084  # SynDigits-LT, Cao formula


def test_climbq_counts_match_shipped_csvs():
    # ClimbQ's class sizes, counted from the long-tail CSVs shipped in ClimbQ's repository.
    assert climbq_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1390, 1076, 833, 644, 498]
    assert [sum(climbq_counts(5000, 10, r)) for r in (10, 50, 200)] == [20425, 13988, 11199]
    assert [sum(climbq_counts(500, 100, r)) for r in (10, 50, 200)] == [18292, 11761, 8883]
    assert [sum(c > 0 for c in climbq_counts(500, 100, r)) for r in (50, 200)] == [90, 72]
    assert climbq_counts(1000, 10, 200) == [1000, 555, 308, 170, 94, 52, 28, 15, 8, 4]
    assert [sum(climbq_counts(1000, 10, r)) for r in (10, 50, 200)] == [4075, 2786, 2234]


def test_parse_names():
    assert parse_name("cifar10") == ("cifar10", None)
    base, lt = parse_name("syndigits-synth-lt-climbq-r50")
    assert base == "syndigits-synth" and lt.profile == "climbq" and lt.rho == 50
    assert dataset_info("cifar100-lt-r100").num_classes == 100
    with pytest.raises(ValueError, match="unknown dataset 'cifar11-lt-r100'"):
        dataset_info("cifar11-lt-r100")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_info("cifar10-lt-rX")


@pytest.fixture(scope="module")
def fake_cifar10(tmp_path_factory) -> Path:
    """CIFAR-10 in its native pickle format with the real class sizes (5000 train / 1000 test per class);
    pixel 0..2 of each image encode its index so that subsets can be identified."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for fname, n, offset in [(f"data_batch_{i}", 10000, (i - 1) * 10000) for i in range(1, 6)] + [
            ("test_batch", 10000, 50000)]:
        idx = np.arange(offset, offset + n)
        data = np.zeros((n, 3072), np.uint8)
        data[:, 0], data[:, 1], data[:, 2] = idx % 256, (idx // 256) % 256, idx // 65536
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": data, "labels": (idx % 10).tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return root


def _ids(images: torch.Tensor) -> set[int]:
    px = images[:, 0, 0, :3].long()  # pixels (0,0),(0,1),(0,2) of the R plane hold the index
    return set((px[:, 0] + 256 * px[:, 1] + 65536 * px[:, 2]).tolist())


def test_cifar10_lt_end_to_end(fake_cifar10):
    t = build_task("cifar10-lt-r100", root=fake_cifar10, verify_md5=False, val_fraction=0.0, seed=0)
    assert t.train_class_counts == C10_R100 and len(t.sources[0].train) == 12406
    assert t.tests["cifar10-lt-r100"].class_counts(10) == [1000] * 10  # balanced test set
    assert t.notes["long_tail"]["cifar10-lt-r100"] == {"rho": 100.0, "profile": "cao"}
    # With a validation split: carved from the long-tailed training set, stratified, disjoint, never from
    # test.
    tv = build_task("cifar10-lt-r100", root=fake_cifar10, verify_md5=False, val_fraction=0.1, seed=0)
    tr_ids, val_ids = _ids(tv.sources[0].train.images), _ids(tv.val.images)
    assert not tr_ids & val_ids and max(tr_ids | val_ids) < 50000
    assert [a + b for a, b in zip(tv.train_class_counts, tv.val.class_counts(10))] == C10_R100
    assert tv.val.class_counts(10)[-1] == 5
    assert tr_ids | val_ids == _ids(t.sources[0].train.images)  # same seed -> same long-tailed subset


def test_cifar10_lt_profiles_and_seeds(fake_cifar10):
    from benchmarks.data.longtail import make_long_tailed

    d = load_domain("cifar10", fake_cifar10, verify_md5=False)
    for rho, total in ((10, 20431), (50, 13996), (200, 11203)):
        assert sum(make_long_tailed(d, 10, rho).train.class_counts(10)) == total
    climb = make_long_tailed(d, 10, 10, profile="climbq")
    assert climb.train.class_counts(10) == [5000, 3871, 2997, 2320, 1796, 1390, 1076, 833, 644, 498]
    # Seeded with a local generator: same seed -> same images; another seed -> another subset of the tail.
    s0, s0b, s1 = (make_long_tailed(d, 10, 100, seed=s).train for s in (0, 0, 1))
    assert torch.equal(s0.images, s0b.images) and _ids(s0.images) != _ids(s1.images)
    state = torch.get_rng_state()
    make_long_tailed(d, 10, 100, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never used
    with pytest.raises(ValueError, match="fewer images"):
        make_long_tailed(d, 10, 10, n_max=6000)


def test_syndigits_lt_protocol(shared_root):
    # SynDigits-LT (as in ClimbQ): n_max = 1000 per head class, 200 test images per class, on the default
    # set.
    t = build_task("syndigits-synth-lt-r100", root=shared_root, val_fraction=0.0)
    assert t.train_class_counts == cao_counts(1000, 10, 100) == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert t.tests["syndigits-synth-lt-r100"].class_counts(10) == [200] * 10
    assert t.channels == 3 and t.size == (28, 28) and t.mean == (0.5, 0.5, 0.5)
