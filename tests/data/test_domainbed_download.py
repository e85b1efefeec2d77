"""Downloading DomainBed's image suites: generated archives in each source's layout, served over real HTTP."""
from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from benchmarks.data import build_task
from benchmarks.data.domainbed_download import download_suite, safe_extract


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in files.items():
            zipped.writestr(name, data)


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tarred:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))


def _tree(top: str, domains: tuple[str, ...], classes: tuple[str, ...],
          per_class: int = 5) -> dict[str, bytes]:
    return {f"{top}/{d}/{c}/{k}.png": _png(40 * i + 3 * j + k) for i, d in enumerate(domains)
            for j, c in enumerate(classes) for k in range(per_class)}


DUPLICATE = "clipart/animal_migration/clipart_006_000227.jpg"  # the first line of DomainBed's duplicate list


def _terra_archives(folder: Path) -> None:
    images, annotations, records = {}, [], []
    categories = [{"id": 1, "name": "bobcat"}, {"id": 2, "name": "coyote"}, {"id": 3, "name": "badger"}]
    for n, location in enumerate((38, 46, 100, 43, 7)):  # location 7 is not one of DomainBed's four
        for k, category in enumerate((1, 2, 3)):
            image_id = f"img{n}{k}"
            images[f"eccv_18_all_images_sm/{image_id}.jpg"] = _png(10 * n + k)
            records.append({"id": image_id, "file_name": f"{image_id}.jpg", "location": location})
            annotations.append({"image_id": image_id, "category_id": category})
    _tar(folder / "eccv_18_all_images_sm.tar.gz", images)
    payload = json.dumps({"images": records, "annotations": annotations, "categories": categories})
    _tar(folder / "eccv_18_annotations.tar.gz",
         {"eccv_18_annotation_files/train_annotations.json": payload.encode()})


def _all_archives(folder: Path) -> None:
    _zip(folder / "PACS.zip", _tree("kfold", ("art_painting", "cartoon", "photo", "sketch"),
                                    ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")))
    _tar(folder / "VLCS.tar.gz", _tree("VLCS", ("Caltech101", "LabelMe", "SUN09", "VOC2007"),
                                       ("bird", "car", "chair", "dog", "person")))
    office_domains = ("Art", "Clipart", "Product", "Real World")
    office = _tree("OfficeHomeDataset_10072016", office_domains, ("Alarm_Clock", "Bed"))
    _zip(folder / "office_home.zip", office)
    for domain in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"):
        files = _tree(".", (domain,), ("aircraft_carrier", "animal_migration"), 2)
        files = {name.removeprefix("./"): data for name, data in files.items()}
        if domain == "clipart":
            files[DUPLICATE] = _png(1)
        _zip(folder / f"{domain}.zip", files)
    _terra_archives(folder)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    served = tmp_path_factory.mktemp("mirror")
    _all_archives(served)
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(served)))  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    server.shutdown()


def _quiet(_: str) -> None:
    pass


@pytest.mark.parametrize("suite, folder, domains", [
    ("pacs", "PACS", ["art_painting", "cartoon", "photo", "sketch"]),
    ("vlcs", "VLCS", ["Caltech101", "LabelMe", "SUN09", "VOC2007"]),
    ("officehome", "office_home", ["Art", "Clipart", "Product", "Real World"]),
    ("domainnet", "domain_net", ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]),
    ("terraincognita", "terra_incognita", ["location_100", "location_38", "location_43", "location_46"]),
])
def test_each_suite_downloads_into_domainbeds_layout(tmp_path: Path, mirror, suite, folder, domains):
    url, _ = mirror
    final = download_suite(tmp_path, suite, mirror=url, log=_quiet)
    assert final == tmp_path / folder
    assert sorted(p.name for p in final.iterdir() if p.is_dir()) == domains
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{folder}.partial")] == []
    if suite == "domainnet":
        assert not (final / DUPLICATE).exists() and (final / "clipart" / "animal_migration").is_dir()
    if suite == "terraincognita":  # DomainBed's 10 classes at its 4 locations; badger and location 7 left out
        assert sorted(p.name for p in (final / "location_38").iterdir()) == ["bobcat", "coyote"]
        assert sorted(p.name for p in (final / "location_38" / "bobcat").iterdir()) == ["img00.jpg"]


def test_loader_download_true_fetches_then_loads(tmp_path: Path, mirror, monkeypatch):
    url, _ = mirror
    monkeypatch.setenv("QBENCH_DOMAINBED_MIRROR", url)
    from benchmarks.data.registry import load_domain

    splits = load_domain("pacs/S", tmp_path, download=True)
    assert len(splits.train) + len(splits.test) == 35 and splits.train.images.shape[1:] == (3, 224, 224)
    task = build_task("pacs", "S", root=tmp_path)  # and the leave-one-domain-out task reads it as any copy
    assert [s.name for s in task.sources] == ["pacs/A", "pacs/C", "pacs/P"]


def test_concurrent_downloads_fetch_once(tmp_path: Path, mirror):
    url, requests = mirror
    before = len(requests)
    download_suite(tmp_path / "single", "vlcs", mirror=url, log=_quiet)
    one_download = len(requests) - before
    before = len(requests)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            download_suite(tmp_path / "shared", "vlcs", mirror=url, log=_quiet)
        except BaseException as err:  # pragma: no cover - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and one_download >= 1
    assert len(requests) - before == one_download  # the waiting ones found the suite and fetched nothing
    assert sorted(p.name for p in (tmp_path / "shared" / "VLCS").iterdir()) == \
        ["Caltech101", "LabelMe", "SUN09", "VOC2007"]


def test_failed_download_leaves_nothing(tmp_path: Path, mirror):
    url, _ = mirror
    with pytest.raises(Exception, match="404"):
        download_suite(tmp_path, "pacs", mirror=f"{url}/nothing-here", log=_quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".PACS.download.lock"]


def test_archives_cannot_write_outside(tmp_path: Path):
    evil_zip = tmp_path / "evil.zip"
    _zip(evil_zip, {"../escaped.txt": b"x"})
    with pytest.raises(ValueError, match="outside"):
        safe_extract(evil_zip, tmp_path / "a")
    evil_tar = tmp_path / "evil.tar.gz"
    with tarfile.open(evil_tar, "w:gz") as tarred:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tarred.addfile(link)
    with pytest.raises(tarfile.TarError):
        safe_extract(evil_tar, tmp_path / "b")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "b" / "link").exists()
    with pytest.raises(ValueError, match="valid: .zip, .tar, .tar.gz"):
        safe_extract(tmp_path / "data.rar", tmp_path / "c")


def test_prepare_data_download_flag(tmp_path: Path, mirror):
    import os
    import subprocess
    import sys

    url, _ = mirror
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "benchmarks/prepare_data.py", "--datasets", "pacs/P",
                           "--download", "--data-root", str(tmp_path)], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "QBENCH_DOMAINBED_MIRROR": url}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "PACS" / "photo" / "dog").is_dir() and "1 ready, 0 missing" in done.stdout
