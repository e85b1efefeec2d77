"""The launchers by name, each with the one signature ``launcher(requests, options) -> LaunchReport``:

=========  ==============================================================================================
``debug``  in this process, one job after another (submitit's DebugExecutor)
``local``  subprocesses on this machine, at most ``options.workers`` at once (submitit's LocalExecutor)
``slurm``  job arrays on a SLURM cluster, each job after its own dependency (``slurm.py``)
=========  ==============================================================================================

The matrix (``benchmarks/matrix/launch.py``) and tuning (``benchmarks/tuning/rounds.py``) both launch here.
"""
from __future__ import annotations

from typing import Sequence

from benchmarks.launch.options import Launcher, LaunchOptions, LaunchReport
from benchmarks.launch.pool import launch_debug, launch_local
from benchmarks.launch.requests import JobRequest
from benchmarks.launch.slurm import launch_slurm

LAUNCHERS: dict[str, Launcher] = {"debug": launch_debug, "local": launch_local, "slurm": launch_slurm}


def available_launchers() -> list[str]:
    """The launcher names, in the order the CLIs list them."""
    return list(LAUNCHERS)


def get_launcher(name: str) -> Launcher:
    """The launcher called ``name``; ValueError (one line, naming the valid launchers) for any other."""
    if name not in LAUNCHERS:
        raise ValueError(f"unknown launcher {name!r}; valid: {', '.join(LAUNCHERS)}")
    return LAUNCHERS[name]


def launch(requests: Sequence[JobRequest], launcher: str, options: LaunchOptions) -> LaunchReport:
    """Launch ``requests`` with the launcher called ``launcher``."""
    return get_launcher(launcher)(requests, options)
