"""DomainBed's image suites (PACS, ...) from their published folder layout, on tiny fake folders, and their
training augmentation (benchmarks/data/dg_augment.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data import build_task
from benchmarks.data.batches import normalise
from benchmarks.data.dg_augment import crop_box, domainbed_augment
from benchmarks.run.batches import Batches
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec

PACS_FOLDERS = ("art_painting", "cartoon", "photo", "sketch")  # sorted: A, C, P, S
CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")


def _fake_pacs(root: Path, per_class: int = 5) -> None:
    for d, domain in enumerate(PACS_FOLDERS):
        for c, cls in enumerate(CLASSES):
            folder = root / "PACS" / domain / cls
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = np.full((12, 10, 3), 20 * d + 3 * c + k, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")


def test_pacs_leave_one_domain_out_from_folders(tmp_path: Path):
    _fake_pacs(tmp_path)
    task = build_task("pacs", "S", root=tmp_path, seed=0)
    assert [s.name for s in task.sources] == ["pacs/A", "pacs/C", "pacs/P"]
    assert task.num_classes == 7 and task.size == (224, 224) and task.primary_test == "S:in"
    assert {k: len(v) for k, v in task.tests.items()} == {"A:out": 7, "C:out": 7, "P:out": 7, "S:out": 7,
                                                          "S:in": 28}  # int(35 * 0.2) = 7 held out
    sketch = task.tests["S:in"].images[:, 0, 0, 0]  # the fake pixel value encodes the domain: 60 + ...
    assert bool((sketch >= 60).all()) and task.tests["S:in"].images.shape[1:] == (3, 224, 224)
    assert sorted(set(task.tests["S:in"].labels.tolist()) | set(task.tests["S:out"].labels.tolist())) == \
        list(range(7))


def test_missing_or_wrong_layout_is_one_line(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="PACS not found"):
        build_task("pacs", "S", root=tmp_path)
    (tmp_path / "PACS" / "photo").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="1 domain folders, expected 4"):
        build_task("pacs", "S", root=tmp_path)
    with pytest.raises(ValueError, match="valid: A, C, P, S"):
        build_task("pacs", "Q", root=tmp_path)


def test_image_suites_train_with_domainbed_augmentation_and_name_variants(tmp_path: Path):
    _fake_pacs(tmp_path, per_class=2)
    assert build_task("pacs", "S", root=tmp_path).augment == "domainbed"
    plain = build_task("pacs-noaug@32", "S", root=tmp_path)
    assert plain.augment == "none" and plain.size == (32, 32)
    assert plain.tests["S:in"].images.shape[1:] == (3, 32, 32)
    for bad in ("pacs@8", "rotated-mnist@32", "pacs-noaug-noaug"):
        with pytest.raises(ValueError, match=f"unknown dataset .{bad}."):  # not a suite: no variant
            build_task(bad, "S", root=tmp_path)


def _photos(n: int = 8, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


def test_domainbed_augmentation_is_seeded_and_differs_across_draws():
    x = _photos()
    first = domainbed_augment(x, torch.Generator().manual_seed(5))
    assert first.shape == x.shape and first.dtype == torch.uint8
    assert torch.equal(first, domainbed_augment(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, domainbed_augment(x, torch.Generator().manual_seed(6)))
    assert not torch.equal(first, x)


def test_crop_boxes_cover_70_to_100_percent_and_grayscale_is_rare():
    generator = torch.Generator().manual_seed(0)
    boxes = [crop_box(224, 224, generator) for _ in range(500)]
    areas = [h * w / 224**2 for _, _, h, w in boxes]
    assert min(areas) >= 0.69 and max(areas) <= 1.0
    assert all(0 <= top <= 224 - h and 0 <= left <= 224 - w for top, left, h, w in boxes)
    out = domainbed_augment(_photos(300, 16), torch.Generator().manual_seed(1))
    grey = ((out[:, 0] == out[:, 1]) & (out[:, 1] == out[:, 2])).flatten(1).all(1).float().mean()
    assert 0.04 <= float(grey) <= 0.17  # RandomGrayscale(p=0.1) on 300 images


def test_training_batches_are_seeded_by_epoch_and_domain_and_evaluation_is_not_augmented(tmp_path: Path):
    _fake_pacs(tmp_path, per_class=3)
    task = build_task("pacs@32", "S", root=tmp_path)
    spec = RunSpec(task=TaskSpec("pacs@32", "S"), arch="resnet50", method="fp",
                   recipe=Recipe(epochs=1, batch_size=4), seed=0)
    batches = Batches(task, spec, torch.device("cpu"), channels_last=False)
    epoch0 = next(iter(batches.epoch(0, 0)))[0]
    assert torch.equal(epoch0, next(iter(batches.epoch(0, 0)))[0])
    assert not torch.equal(epoch0, next(iter(batches.epoch(1, 0)))[0])
    split = task.tests["S:in"]
    evaluated = torch.cat([x for x, _ in batches.evaluation(split)])
    assert torch.equal(evaluated, torch.cat([x for x, _ in batches.evaluation(split)]))
    assert torch.allclose(evaluated, normalise(split.images, task.mean, task.std))


def test_augmentation_equals_torchvisions_transforms_draw_for_draw():
    """DomainBed's Compose, applied by torchvision to each image after torch.manual_seed(s), gives what
    domainbed_augment gives with a generator seeded s (same draws in the same order), up to uint8 rounding."""
    from benchmarks.data.tv import transforms as T

    size = 48
    domainbed = T.Compose([T.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
                           T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3, 0.3),
                           T.RandomGrayscale(p=0.1)])
    x = _photos(12, size)
    ours = domainbed_augment(x, torch.Generator().manual_seed(11))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(11)
        theirs = torch.stack([domainbed(image.float() / 255.0) for image in x])
    finally:
        torch.random.set_rng_state(state)
    difference = (ours.float() - (theirs * 255.0).round()).abs()
    assert float(difference.max()) <= 1.0 and float(difference.mean()) < 0.05
