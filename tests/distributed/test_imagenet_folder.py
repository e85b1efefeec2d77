"""The ILSVRC-2012 folder loader on a tiny fake ImageNet generated here: both val layouts, the sharded seeded
order of a data-parallel run, the DataLoader path (workers, persistent), the registry loader, and the grid's
dry run."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks.data.imagenet import EpochBatches, ImageNetStream, imagenet_samples
from benchmarks.data.registry import load_domain
from benchmarks.run_matrix import main as run_matrix

WNIDS = ["n01440764", "n01443537", "n01484850"]


def _jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40 + shade, 30), (shade * 40 % 256, 80, 160)).save(path)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """train/<wnid>/ with 4 images per class; val flat with LOC_val_solution.csv (Kaggle layout)."""
    root = tmp_path_factory.mktemp("data")
    base = root / "imagenet"
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            _jpeg(base / "train" / wnid / f"{wnid}_{i}.JPEG", c * 4 + i)
    with (base / "LOC_val_solution.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "PredictionString"])
        for v in range(6):
            image_id = f"ILSVRC2012_val_{v + 1:08d}"
            _jpeg(base / "val" / f"{image_id}.JPEG", v)
            writer.writerow([image_id, f"{WNIDS[v % 3]} 1 2 30 20"])
    return root


def test_flat_val_with_a_label_file_equals_val_in_class_folders(fake_root, tmp_path):
    flat, classes = imagenet_samples(fake_root, "val")
    assert classes == WNIDS and [label for _, label in flat] == [0, 1, 2, 0, 1, 2]
    folders = tmp_path / "imagenet"  # the same images rearranged into val/<wnid>/ (valprep.sh)
    folders.mkdir()
    (folders / "train").symlink_to(fake_root / "imagenet" / "train")
    for path, label in flat:
        (folders / "val" / WNIDS[label]).mkdir(parents=True, exist_ok=True)
        (folders / "val" / WNIDS[label] / path.name).symlink_to(path)
    arranged, _ = imagenet_samples(tmp_path, "val")
    assert sorted((p.name, y) for p, y in arranged) == sorted((p.name, y) for p, y in flat)
    train, _ = imagenet_samples(fake_root, "train")
    assert len(train) == 12 and [y for _, y in train] == [0] * 4 + [1] * 4 + [2] * 4


def test_ranks_take_their_rows_of_the_one_process_batches_and_resume_skips(fake_root):
    whole = EpochBatches(12, 4, seed=3, shuffle=True)
    ranks = [EpochBatches(12, 4, seed=3, shuffle=True, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for sampler in [whole, *ranks]:
            sampler.set_epoch(epoch)
        glued = [a + b for a, b in zip(*ranks)]
        assert glued == list(whole) and len(glued) == 3
    assert sorted(k % 12 for batch in whole for k in batch) == list(range(12))  # a permutation
    whole.set_epoch(1, start_batch=2)
    assert list(whole) == glued[2:]


def test_the_dataloader_path_is_reproducible_across_worker_counts(fake_root):
    samples, _ = imagenet_samples(fake_root, "train")
    two = ImageNetStream(samples, batch_size=4, train=True, seed=0, size=16, workers=2)
    none = ImageNetStream(samples, batch_size=4, train=True, seed=0, size=16, workers=0)
    for epoch in (0, 1):  # persistent workers serve the second epoch
        a, b = list(two.epoch(epoch)), list(none.epoch(epoch))
        assert len(a) == 3 and a[0][0].shape == (4, 3, 16, 16) and a[0][0].dtype == torch.float32
        assert all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
    resumed = list(none.epoch(1, start_batch=1))
    assert all(torch.equal(x, u) for (x, _), (u, _) in zip(resumed, b[1:]))


def test_the_registry_loads_a_small_imagenet_folder(fake_root):
    splits = load_domain("imagenet", fake_root, size=(32, 32))
    assert splits.train.images.shape == (12, 3, 32, 32) and splits.test.images.shape == (6, 3, 32, 32)
    assert splits.test.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_the_imagenet_dry_run_lists_gpus_and_gpu_hours(tmp_path, capsys):
    assert run_matrix(["--grid", "imagenet", "--dry-run", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split()[-1] == "gpus"
    rows = [line.split() for line in lines[1:] if line.split()[-1:] == ["8"] and "imagenet" in line]
    assert len(rows) == 26 and {row[5] for row in rows} == {"resnet18", "resnet50"}
    assert "estimated GPU-hours for the 26 runs not done" in out.out
    assert "26 runs are data-parallel (208 GPUs in all)" in out.out
