"""DomainBed's image suites (PACS, ...) from their published folder layout, on tiny fake folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.data import build_task

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
