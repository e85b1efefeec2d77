"""Where a number came from: code version, library versions, host, device, scheduler job."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def code_version() -> tuple[str, bool]:
    """(git SHA, dirty flag) of the checkout; ("unknown", False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


SIMD_FLAG_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c")


@lru_cache(maxsize=1)
def cpu_kernel_fingerprint() -> str:
    """CPU model, cache size and SIMD extensions (Linux /proc/cpuinfo; else the processor name).

    oneDNN and MKL choose their kernels, and so the order of float sums, from these — more finely than torch's
    ``cpu_capability``, which reports "AVX512" for CPUs with and without AMX. Two machines give bit-identical
    CPU results only when this string (and the torch build and thread count) match.
    """
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        info = dict(line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    info = {key.strip(): value.strip() for key, value in info.items()}
    simd = sorted(flag for flag in info.get("flags", "").split() if flag.startswith(SIMD_FLAG_PREFIXES))
    return f"{info.get('model name', '?')}; cache {info.get('cache size', '?')}; {' '.join(simd)}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict[str, Any]:
    sha, dirty = code_version()
    from benchmarks.data.tv import torchvision

    return {
        "code_version": sha,
        "code_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": device_name(device),
        # CPU results are bit-reproducible for a fixed thread count; different counts reorder float sums.
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # and different SIMD kernels (AVX2/AVX512)
        "cpu_kernels": cpu_kernel_fingerprint(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
