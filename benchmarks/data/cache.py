"""On-disk cache of built tensors under ``<data root>/cache/``.

Files are keyed by a hash of everything that determines their content (generator version, seed, sizes, library
versions, or a fingerprint of the source files), so a changed input never reads a stale file. Writes go to a
temporary file and are renamed into place, so concurrent jobs (SLURM arrays) never read a partial file; the
bytes are serialised in memory first, which makes the file byte-identical for identical tensors.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import torch

CACHE_DIR = "cache"


def cache_file(root: Path, name: str, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return root / CACHE_DIR / f"{name.replace('/', '-')}-{digest}.pt"


def folder_fingerprint(path: Path) -> dict:
    """Cheap identity of a directory tree: file count, total bytes and newest mtime."""
    n = size = 0
    newest = 0.0
    for dirpath, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            n, size, newest = n + 1, size + st.st_size, max(newest, st.st_mtime)
    return {"path": str(path.resolve()), "files": n, "bytes": size, "mtime": newest}


def save_atomic(path: Path, tensors: dict) -> None:
    buf = io.BytesIO()
    torch.save(tensors, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def cached(root: Path, name: str, key: dict, build: Callable[[], dict], enabled: bool = True) -> dict:
    """Load ``<root>/cache/<name>-<hash(key)>.pt`` or build, save and return it."""
    path = cache_file(root, name, key)
    if enabled and path.exists():
        return torch.load(path, weights_only=True)
    tensors = build()
    if enabled:
        save_atomic(path, tensors)
    return tensors
