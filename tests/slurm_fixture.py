"""Session fixture ``slurm_cluster``: the one-node SLURM cluster on localhost (``slurm/cluster.sh``).

Register it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.slurm_fixture"]`` or
``from tests.slurm_fixture import slurm_cluster  # noqa: F401`` (either needs the repo root on ``sys.path``,
which ``python -m pytest`` run from the repo root gives).

Behaviour:
- ``QBENCH_SLURM_EXTERNAL=1``: CI (or you) already ran ``slurm/cluster.sh up``; the fixture only checks
  that ``sinfo`` answers and never stops the cluster.
- otherwise, if the cluster is already fully up it is used as is and left running; if not, the fixture
  runs ``cluster.sh up`` (installing the Debian packages the first time) and ``cluster.sh down`` at the
  end of the session.
- if the cluster cannot be started (not root, no apt-get, a daemon fails) every test using the fixture
  is skipped with a one-line reason ending in the tail of the log; with ``QBENCH_SLURM_REQUIRED=1`` it
  fails instead (for CI jobs that must not skip silently).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_ROOT / "slurm" / "cluster.sh"
PARTITION = "debug"
PROFILE = "local"


@dataclass(frozen=True)
class SlurmClusterInfo:
    state_dir: Path  # configs, pid files, logs (state_dir / "log"), spool, mariadb datadir
    partition: str  # the default partition of the test cluster
    slurm_conf: Path  # also symlinked from /etc/slurm/slurm.conf
    profile: str  # launch profile for this cluster: benchmarks.launch.profiles.load_slurm_profile(profile)
    started_here: bool  # True when this fixture ran `up` and will run `down`


def state_dir() -> Path:
    default = REPO_ROOT / "slurm" / ".state"
    return Path(os.environ.get("QBENCH_SLURM_STATE") or default).expanduser().resolve()


def run_cluster(command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``bash slurm/cluster.sh <command>``, output captured (stderr folded into stdout)."""
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_line_tail(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-600:]


def _unavailable(reason: str) -> None:
    if os.environ.get("QBENCH_SLURM_REQUIRED") == "1":
        pytest.fail(f"local SLURM cluster required but unavailable: {reason}", pytrace=False)
    pytest.skip(f"local SLURM cluster unavailable: {reason}")


def _sinfo_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmClusterInfo]:
    state = state_dir()
    conf = state / "etc" / "slurm.conf"
    if os.environ.get("QBENCH_SLURM_EXTERNAL") == "1":
        if not _sinfo_answers():
            _unavailable("QBENCH_SLURM_EXTERNAL=1 but `sinfo` does not answer (was slurm/cluster.sh up run?)")
        yield SlurmClusterInfo(state, PARTITION, conf, PROFILE, started_here=False)
        return

    if os.geteuid() != 0:
        _unavailable(f"slurm/cluster.sh needs root (uid {os.geteuid()}); start it as root and set "
                     "QBENCH_SLURM_EXTERNAL=1")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        _unavailable("SLURM is not installed and apt-get is not available")

    started_here = False
    if run_cluster("status", timeout=60).returncode != 0:
        try:
            proc = run_cluster("up")
        except subprocess.TimeoutExpired:
            _unavailable("`slurm/cluster.sh up` timed out")
        if proc.returncode != 0:
            run_cluster("down", timeout=120)  # stop whatever half started
            _unavailable(
                f"`slurm/cluster.sh up` failed (rc={proc.returncode}): {_one_line_tail(proc.stdout)}"
            )
        started_here = True

    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)  # /etc/slurm/slurm.conf points here too; this is belt and braces
    try:
        yield SlurmClusterInfo(state, PARTITION, conf, PROFILE, started_here=started_here)
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        if started_here:
            run_cluster("down", timeout=300)
