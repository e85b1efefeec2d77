"""DomainBed's image suites in their published folder layouts: PACS, VLCS, OfficeHome, TerraIncognita,
DomainNet (``domainbed/datasets.py``, ``MultipleEnvironmentImageFolder``; QT-DoG's Table 1 datasets).

Layout under the data root, as DomainBed's download script leaves it:
``<folder>/<domain folder>/<class>/<image>``.
DomainBed takes the domain folders in sorted order; domain i of a suite is the i-th sorted folder, named by
DomainBed's environment code (PACS ``A, C, P, S`` = art_painting, cartoon, photo, sketch). Each domain is
split 80/20 in/out with DomainBed's ``split_dataset`` seeded by (trial, domain index), like the MNIST suites.
Images are decoded once, resized to 224×224 (DomainBed's evaluation transform) and cached as uint8 tensors;
the in-memory loading fits PACS, VLCS, OfficeHome and TerraIncognita, not DomainNet's 586,575 images (a
streaming loader is not written yet). Nothing is downloaded unless asked: ``download=True`` fetches a missing
suite from DomainBed's sources (``domainbed_download``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.cache import cached, folder_fingerprint
from benchmarks.data.domainbed_mnist import split_in_out
from benchmarks.data.folders import load_image_folder

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class ImageSuite:
    folder: str  # under the data root, as DomainBed's download script names it
    domains: tuple[str, ...]  # DomainBed's environment codes, in sorted-folder order
    num_classes: int


IMAGE_SUITES: dict[str, ImageSuite] = {
    "pacs": ImageSuite("PACS", ("A", "C", "P", "S"), 7),
    "vlcs": ImageSuite("VLCS", ("C", "L", "S", "V"), 5),
    "officehome": ImageSuite("office_home", ("A", "C", "P", "R"), 65),
    "terraincognita": ImageSuite("terra_incognita", ("L100", "L38", "L43", "L46"), 10),
    "domainnet": ImageSuite("domain_net", ("clip", "info", "paint", "quick", "real", "sketch"), 345),
}


def domain_folder(root: Path, suite: ImageSuite, domain: str) -> Path:
    base = root / suite.folder
    if not base.is_dir():
        raise FileNotFoundError(f"{suite.folder} not found at {base}; place the dataset there as "
                                f"{base}/<domain>/<class>/<image> (DomainBed's layout), or fetch it with "
                                "benchmarks/prepare_data.py --datasets <suite>/<domain> --download")
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if len(folders) != len(suite.domains):
        raise FileNotFoundError(f"{base} has {len(folders)} domain folders, expected {len(suite.domains)} "
                                f"({', '.join(suite.domains)} in sorted order)")
    return folders[suite.domains.index(domain)]


def load_domainbed_images(root: Path, *, download: bool = False, verify_md5: bool = True,
                          size: tuple[int, int] = (224, 224), suite: str, domain: str,
                          trial_seed: int = 0) -> DomainSplits:
    """Registry loader of one domain: ``train`` = its 80 % in split, ``test`` = its 20 % out split."""
    if download:  # fetched and arranged as DomainBed's download script does, once, when missing
        from benchmarks.data.domainbed_download import download_suite

        download_suite(root, suite)
    spec = IMAGE_SUITES[suite]
    folder = domain_folder(root, spec, domain)
    key = {"v": LAYOUT_VERSION, "files": folder_fingerprint(folder), "size": list(size)}

    def build() -> dict:
        data = load_image_folder(folder, size, spec.num_classes)
        return {"x": data.images, "y": data.labels}

    tensors = cached(root, f"{suite}-{domain}", key, build)
    data = ImageTensors(tensors["x"], tensors["y"])
    inside, out = split_in_out(data, trial_seed, spec.domains.index(domain))
    return DomainSplits(f"{suite}/{domain}", inside, out)
