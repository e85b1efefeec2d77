"""Stop a worker's training promptly once SLURM has said the job is ending.

SLURM ends a job (scancel, ``scontrol requeue``, preemption, the time limit) with SIGTERM and, KillWait or
GraceTime seconds later, SIGKILL. submitit only logs SIGTERM and lets the job run on, so a run kept
training through the grace period and could even finish there, which made a requeue or a cancelled trial
look like an ordinary success. A worker calls :func:`stop_on_sigterm`; the training loop then calls
:func:`raise_if_terminated` between steps and stops with :class:`Terminated` there (never in the middle of
writing a checkpoint or a study's journal). The run keeps its last epoch checkpoint, records the stop in
``failed.json``, and the requeued or retried job resumes from that checkpoint.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


class Terminated(RuntimeError):
    """SIGTERM arrived: the job is ending, so the run stopped at a step boundary."""


def _note(signum: int, frame: FrameType | None) -> None:
    _requested.set()


def stop_on_sigterm() -> bool:
    """Install the handler in this (worker) process; False where signals cannot be handled (not the main
    thread), in which case SIGTERM keeps whatever handler it had."""
    _requested.clear()
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _note)
    return True


def raise_if_terminated(where: str) -> None:
    if _requested.is_set():
        raise Terminated(f"SIGTERM received: stopped {where}; the run resumes from its last epoch checkpoint")
