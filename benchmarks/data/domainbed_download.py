"""Fetch DomainBed's image suites and arrange them in the layout ``domainbed_images`` reads.

The sources and the arrangement are those of DomainBed's ``domainbed/scripts/download.py`` (MIT licence):

* PACS: one Google Drive zip whose ``kfold/`` becomes ``PACS/``;
* VLCS: one Google Drive tar.gz holding ``VLCS/``;
* OfficeHome: one Google Drive zip whose ``OfficeHomeDataset_10072016/`` becomes ``office_home/``;
* DomainNet: six zips from the M3SDA server (one folder per domain), then the 9,431 images DomainBed lists as
  duplicates are removed (``domainbed_files/domain_net_duplicates.txt.gz``, DomainBed's list);
* TerraIncognita: the Caltech Camera Traps "ECCV 2018" images and annotations, from which the 10 classes at
  locations 38, 43, 46 and 100 are copied into ``terra_incognita/location_<n>/<class>/`` (an image with
  several annotations of included classes is copied once per annotation, as DomainBed does).

Nothing here runs unless asked (``--download`` of ``prepare_data.py``, ``download=True`` of the loader).
``QBENCH_DOMAINBED_MIRROR`` (or ``mirror=``) replaces every source by ``<mirror>/<archive file name>``: a
lab's own copy, and how the tests serve generated archives over HTTP. Safety on a shared file system:

* one process downloads a suite at a time (an ``flock`` on ``<root>/.<folder>.download.lock``); a second one
  waits and then finds the suite there;
* everything is fetched and arranged in a temporary folder under the data root, checked (domain and class
  folder counts), and renamed into place: a killed download leaves no half suite behind, only a temporary
  folder that the next attempt ignores;
* archives are extracted with the standard library's ``data`` filter (tar) or a member check (zip): no path
  outside the extraction folder, no links, no device files. Nothing in an archive is executed.

DomainBed publishes no checksums for these archives; the arranged folders are checked instead.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from benchmarks.data.domainbed_images import IMAGE_SUITES, ImageSuite

MIRROR_ENV = "QBENCH_DOMAINBED_MIRROR"
DUPLICATES = Path(__file__).with_name("domainbed_files") / "domain_net_duplicates.txt.gz"
TERRA_LOCATIONS = ("38", "46", "100", "43")
TERRA_CLASSES = ("bird", "bobcat", "cat", "coyote", "dog", "empty", "opossum", "rabbit", "raccoon",
                 "squirrel")
DOMAINNET_SERVER = "http://csr.bu.edu/ftp/visda/2019/multi-source"
TERRA_SERVER = "https://storage.googleapis.com/public-datasets-lila/caltechcameratraps"


@dataclass(frozen=True)
class Archive:
    source: str  # an http(s) URL, or "gdrive:<file id>"
    filename: str  # the downloaded file's name (and its name on a mirror)


Arrange = Callable[[Path, Path], None]  # (folder the archives were extracted into, the suite's final folder)


def _rename_from(name: str) -> Arrange:
    def arrange(extracted: Path, final: Path) -> None:
        os.rename(extracted / name, final)

    return arrange


def _arrange_domainnet(extracted: Path, final: Path) -> None:
    with gzip.open(DUPLICATES, "rt") as handle:
        for line in handle:
            (extracted / line.strip()).unlink(missing_ok=True)
    os.rename(extracted, final)


def _arrange_terra(extracted: Path, final: Path) -> None:
    data: dict[str, list] = defaultdict(list)
    for listing in sorted((extracted / "eccv_18_annotation_files").glob("*.json")):
        for key, values in json.loads(listing.read_text()).items():
            data[key].extend(values)
    category = {item["id"]: item["name"] for item in data["categories"]}
    by_image: dict[str, list[str]] = defaultdict(list)
    for annotation in data["annotations"]:
        by_image[annotation["image_id"]].append(category[annotation["category_id"]])
    images = extracted / "eccv_18_all_images_sm"
    final.mkdir()
    for image in data["images"]:
        location = str(image["location"])
        if location not in TERRA_LOCATIONS:
            continue
        for name in by_image[image["id"]]:
            if name not in TERRA_CLASSES:
                continue
            target = final / f"location_{location}" / name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(images / image["file_name"], target / Path(image["file_name"]).name)


@dataclass(frozen=True)
class SuiteSource:
    archives: tuple[Archive, ...]
    arrange: Arrange


SOURCES: dict[str, SuiteSource] = {
    "pacs": SuiteSource((Archive("gdrive:1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd", "PACS.zip"),),
                        _rename_from("kfold")),
    "vlcs": SuiteSource((Archive("gdrive:1skwblH1_okBwxWxmRsp9_qi15hyPpxg8", "VLCS.tar.gz"),),
                        _rename_from("VLCS")),
    "officehome": SuiteSource((Archive("gdrive:1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC", "office_home.zip"),),
                              _rename_from("OfficeHomeDataset_10072016")),
    "domainnet": SuiteSource(tuple(Archive(f"{DOMAINNET_SERVER}/{path}", path.split("/")[-1]) for path in (
        "groundtruth/clipart.zip", "infograph.zip", "groundtruth/painting.zip", "quickdraw.zip", "real.zip",
        "sketch.zip")), _arrange_domainnet),
    "terraincognita": SuiteSource((Archive(f"{TERRA_SERVER}/eccv_18_all_images_sm.tar.gz",
                                           "eccv_18_all_images_sm.tar.gz"),
                                   Archive(f"{TERRA_SERVER}/eccv_18_annotations.tar.gz",
                                           "eccv_18_annotations.tar.gz")), _arrange_terra),
}


def download_suite(root: Path, suite: str, *, mirror: str | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """The suite's folder under ``root``, downloaded and arranged first when it is not there."""
    if suite not in SOURCES:
        raise ValueError(f"invalid DomainBed suite {suite!r}; valid: {', '.join(sorted(SOURCES))}")
    spec = IMAGE_SUITES[suite]
    root = Path(root)
    final = root / spec.folder
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    with _exclusive(root / f".{spec.folder}.download.lock"):
        if final.is_dir():  # another process finished it while this one waited
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=root))
        try:
            extracted = work / "extracted"
            for archive in SOURCES[suite].archives:
                log(f"downloading {archive.filename} for {suite} into {root}")
                path = _fetch(archive, work, mirror)
                safe_extract(path, extracted)
                path.unlink()
            staged = work / "staged"
            SOURCES[suite].arrange(extracted, staged)
            check_layout(staged, spec)
            os.rename(staged, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"{suite} ready at {final}")
    return final


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fetch(archive: Archive, folder: Path, mirror: str | None) -> Path:
    from torchvision.datasets.utils import download_file_from_google_drive, download_url

    if mirror:
        download_url(f"{mirror.rstrip('/')}/{archive.filename}", str(folder), archive.filename)
    elif archive.source.startswith("gdrive:"):
        download_file_from_google_drive(archive.source.removeprefix("gdrive:"), str(folder), archive.filename)
    else:
        download_url(archive.source, str(folder), archive.filename)
    path = folder / archive.filename
    if not path.is_file():
        raise FileNotFoundError(f"download of {archive.filename} left no file at {path}")
    return path


def safe_extract(archive: Path, into: Path) -> None:
    """Extract a .zip, .tar or .tar.gz into ``into``; refuses members that would land outside it."""
    into.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            base = into.resolve()
            for member in zipped.namelist():
                target = (into / member).resolve()
                if not target.is_relative_to(base):
                    raise ValueError(f"{archive.name}: member {member!r} would be written outside {into}")
            zipped.extractall(into)
    elif archive.name.endswith((".tar", ".tar.gz", ".tgz")):
        with tarfile.open(archive) as tarred:
            tarred.extractall(into, filter="data")  # no absolute paths, no escaping links, no devices
    else:
        raise ValueError(f"invalid archive {archive.name!r}; valid: .zip, .tar, .tar.gz")


def check_layout(folder: Path, suite: ImageSuite) -> None:
    """``folder`` holds the suite's domain folders, each with at most the suite's number of class folders."""
    domains = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if len(domains) != len(suite.domains):
        raise ValueError(f"downloaded {suite.folder} has {len(domains)} domain folders, expected "
                         f"{len(suite.domains)}: {[p.name for p in domains]}")
    for domain in domains:
        classes = [p for p in domain.iterdir() if p.is_dir()]
        if not classes or len(classes) > suite.num_classes:
            raise ValueError(f"downloaded {domain} has {len(classes)} class folders, expected 1 to "
                             f"{suite.num_classes}")
