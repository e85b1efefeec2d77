"""Checks every entry point makes before anything runs: each raises a one-line ValueError naming the bad
value and what would be valid, which the entry point prints and exits 2 with. Nothing here writes a file.

Torch is imported only to ask whether CUDA exists, and only when a CUDA device is named."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.run.redact import redact_url

# A run writes a checkpoint every epoch (a ResNet-56 one is ~7 MB, an ImageNet ResNet-50 ~200 MB) plus its
# records; below this much free space on the output's file system a launch is refused up front, rather than
# failing runs one by one mid-epoch. ``QBENCH_MIN_FREE_GB`` changes it (0 turns the check off).
DEFAULT_MIN_FREE_GB = 1.0
MIN_FREE_ENV = "QBENCH_MIN_FREE_GB"
# MLflow stores we can write to; "file:" is the deprecated file store, refused with its own message
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
# Optuna RDB storages (SQLAlchemy URLs; a driver may follow, as in postgresql+psycopg2)
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
# a tracking server that does not answer is reported within this many seconds (MLflow retries for minutes)
CONNECT_TIMEOUT_S = 3.0
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def check_int(flag: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise ValueError(f"invalid {flag} {value}; expected an integer >= {low}")


def check_float(flag: str, value: float | None, low: float) -> None:
    if value is not None and not value > low:
        raise ValueError(f"invalid {flag} {value}; expected a number > {low:g}")


def check_device(device: str) -> None:
    """auto | cpu | cuda | cuda:N (| mps); a CUDA device on a machine without CUDA is refused too."""
    if not _DEVICE.match(device):
        raise ValueError(f"invalid --device {device!r}; valid: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r} requested but CUDA is not available here; "
                             "valid: auto, cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")


def check_slurm_profile(name: str) -> None:
    from benchmarks.launch.profiles import load_slurm_profile

    try:
        load_slurm_profile(name)
    except FileNotFoundError as err:
        raise ValueError(first_line(err)) from None


def tracking_uri_in_use(flag_value: str | None) -> tuple[str | None, str]:
    """The MLflow URI that will be used (None: the default sqlite file in the output) and where it came
    from, so an error can name the flag or the environment variable."""
    if flag_value:
        return flag_value, "--tracking-uri"
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return (env, "MLFLOW_TRACKING_URI") if env else (None, "default")


def check_tracking_uri(uri: str | None, source: str = "--tracking-uri") -> None:
    """A scheme MLflow can write to; an http(s) server must answer a TCP connect within a few seconds."""
    if not uri:
        return
    shown = str(redact_url(uri))
    scheme = urlsplit(uri).scheme.lower().split("+")[0]
    if scheme == "file" or "://" not in uri:
        raise ValueError(f"{source} {shown!r} is a file store, which MLflow 3 deprecates; use sqlite:///PATH "
                         "or http://HOST:PORT")
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"{source} {shown!r}: unknown scheme {scheme!r}; "
                         f"valid: {', '.join(TRACKING_SCHEMES)}")
    if scheme == "sqlite":
        _check_sqlite_parent(uri, source, shown)
    if scheme in ("http", "https"):
        _check_reachable(uri, source, shown)


def check_storage_url(url: str | None) -> None:
    """An Optuna RDB URL (``--storage``); None means the journal file, always fine."""
    if not url:
        return
    shown = str(redact_url(url))
    scheme = urlsplit(url).scheme.lower().split("+")[0]
    if "://" not in url or scheme not in STORAGE_SCHEMES:
        raise ValueError(f"invalid --storage {shown!r}; expected an RDB URL, scheme one of "
                         f"{', '.join(STORAGE_SCHEMES)} (e.g. sqlite:///study.db)")
    if scheme == "sqlite":
        _check_sqlite_parent(url, "--storage", shown)


def check_output_dir(output: Path | str, flag: str = "--output") -> None:
    """The output directory exists and is writable, or can be created where its nearest existing parent is
    writable; and its file system has room for checkpoints (``check_free_space``)."""
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a file, not a directory")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise ValueError(f"{flag} {str(path)!r}: {str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r} is not writable "
                         f"({str(existing)!r} is read-only for this user)")
    check_free_space(existing, flag)


def check_free_space(path: Path, flag: str = "--output") -> None:
    raw = os.environ.get(MIN_FREE_ENV)
    try:
        need_gb = float(raw) if raw else DEFAULT_MIN_FREE_GB
    except ValueError:
        raise ValueError(f"invalid {MIN_FREE_ENV} {raw!r}; expected a number of GB such as 1 or 0.5"
                         ) from None
    free_gb = shutil.disk_usage(path).free / 2**30
    if free_gb < need_gb:
        raise ValueError(f"{flag} {str(path)!r}: only {free_gb:.2f} GB free, below the {need_gb:g} GB "
                         f"a run's checkpoints need (set {MIN_FREE_ENV} to change the threshold)")


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _check_sqlite_parent(uri: str, source: str, shown: str) -> None:
    path = uri.split(":///", 1)[1] if ":///" in uri else ""
    if not path or path == ":memory:":
        return
    parent = Path(path).parent
    if not parent.is_dir():
        # a sqlite store in the output directory is created with it; elsewhere the folder must exist
        created = nearest_existing(parent)
        if not os.access(created, os.W_OK):
            raise ValueError(f"{source} {shown!r}: folder {str(parent)!r} does not exist and cannot be "
                             "created")


def _check_reachable(uri: str, source: str, shown: str) -> None:
    """GET ``<uri>/health`` (every MLflow server answers it) with a short timeout. A plain TCP connect is not
    enough: behind a proxy or a NAT gateway any address accepts connections."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):  # a server behind authentication: it answers, the client will log in
            return
        reason = f"HTTP {err.code} from {redact_url(url)}: not an MLflow server"
    except (OSError, ValueError) as err:  # URLError, refused, timed out, bad host name
        cause = getattr(err, "reason", err)
        reason = f"no MLflow server answers ({getattr(cause, 'strerror', None) or cause})"
    raise ValueError(f"{source} {shown!r}: {reason}; start it or pass another URI")
