"""SLURM launch profiles: ``slurm/profiles/<name>.yaml`` -> submitit executor parameters.

A profile describes one cluster (or one kind of job on it). It is a flat YAML mapping with these keys;
every key is optional and falls back to the default in ``DEFAULTS``:

=========================  ===============================================================================
``partition``              SLURM partition (``null``: the cluster's default partition)
``gpus_per_node``          GPUs per job (``--gpus-per-node``)
``cpus_per_task``          CPUs per job (one task per job)
``mem_gb``                 memory per job in GB (``--mem``)
``timeout_min``            wall-clock limit in minutes (``--time``)
``array_parallelism``      at most this many tasks of one array run at once (``--array=0-N%P``)
``max_array_size``         the cluster's ``MaxArraySize`` (``scontrol show config``); array indices must stay
                           below it, so launchers split longer arrays into chunks (``array_chunks``)
``setup``                  shell lines run in the sbatch script before the job (``module load``, venv ...)
``additional_parameters``  extra ``#SBATCH --key=value`` lines, e.g. ``{account: proj, qos: normal}``
``signal_delay_s``         seconds before the time limit at which SLURM sends the requeue signal (USR2)
``max_num_timeout``        how often a timed-out checkpointable job is requeued (submitit constructor arg)
``runs_per_gpu``           runs packed into one job as concurrent processes sharing its GPU (default 1)
=========================  ===============================================================================

``submitit_parameters(profile)`` gives the kwargs of ``AutoExecutor.update_parameters``;
``executor_kwargs(profile)`` the constructor kwargs (``slurm_max_num_timeout``); ``make_executor`` does both.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE_DIR = REPO_ROOT / "slurm" / "profiles"

DEFAULTS: dict[str, Any] = {
    "partition": None,
    "gpus_per_node": 0,
    "cpus_per_task": 1,
    "mem_gb": 4.0,
    "timeout_min": 60,
    "array_parallelism": 256,
    "max_array_size": 1001,
    "setup": [],
    "additional_parameters": {},
    "signal_delay_s": 90,
    "max_num_timeout": 3,
    "runs_per_gpu": 1,  # runs packed into one job, sharing its GPU (benchmarks/launch/packing.py)
}
VALID_KEYS: tuple[str, ...] = tuple(DEFAULTS)

T = TypeVar("T")


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``slurm/profiles/``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or path.is_file()
    if not looks_like_path:
        path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"SLURM profile {text!r} not found (looked for {path}); "
            f"shipped profiles: {', '.join(available_profiles()) or 'none'}"
        )
    return path


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_profile(raw: Any, source: str = "<profile>") -> dict[str, Any]:
    """Check a profile mapping and return it completed with ``DEFAULTS``.

    Raises ValueError for a non-mapping, an unknown key (naming it and the valid keys) or a bad value.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a SLURM profile must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in DEFAULTS)
    if unknown:
        raise ValueError(
            f"{source}: unknown SLURM profile key(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid keys: {', '.join(VALID_KEYS)}"
        )
    prof: dict[str, Any] = copy.deepcopy(DEFAULTS)
    prof.update(copy.deepcopy(raw))

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{source}: {key} must be {want}, got {prof[key]!r}")

    if prof["partition"] is not None and not (isinstance(prof["partition"], str) and prof["partition"]):
        raise bad("partition", "a non-empty string or null")
    for key, lowest in (
        ("gpus_per_node", 0),
        ("cpus_per_task", 1),
        ("timeout_min", 1),
        ("array_parallelism", 1),
        ("max_array_size", 1),
        ("signal_delay_s", 0),
        ("max_num_timeout", 0),
        ("runs_per_gpu", 1),
    ):
        if not _is_int(prof[key]) or prof[key] < lowest:
            raise bad(key, f"an integer >= {lowest}")
    mem = prof["mem_gb"]
    if isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0:
        raise bad("mem_gb", "a positive number")
    prof["mem_gb"] = float(mem)
    setup = prof["setup"]
    if setup is None:
        setup = prof["setup"] = []
    if not isinstance(setup, list) or not all(isinstance(line, str) for line in setup):
        raise bad("setup", "a list of shell lines (strings)")
    extra = prof["additional_parameters"]
    if extra is None:
        extra = prof["additional_parameters"] = {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise bad("additional_parameters", "a mapping of sbatch option names to values")
    return prof


def load_slurm_profile(name_or_path: str | Path) -> dict[str, Any]:
    """Load a profile by name (``local`` -> ``slurm/profiles/local.yaml``) or by path, validated and
    completed with defaults."""
    path = _resolve(name_or_path)
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    return validate_profile(raw, source=str(path))


def submitit_parameters(profile: dict[str, Any]) -> dict[str, Any]:
    """Map a profile to ``AutoExecutor.update_parameters`` kwargs (``max_num_timeout`` excluded: it is a
    constructor argument, see ``executor_kwargs``). Generic keys also apply to submitit's local executor;
    ``slurm_*`` keys only to SLURM."""
    prof = validate_profile(profile)
    params: dict[str, Any] = {
        "cpus_per_task": prof["cpus_per_task"],
        "mem_gb": prof["mem_gb"],
        "timeout_min": prof["timeout_min"],
        "slurm_array_parallelism": prof["array_parallelism"],
        "slurm_setup": list(prof["setup"]),
        "slurm_additional_parameters": dict(prof["additional_parameters"]),
        "slurm_signal_delay_s": prof["signal_delay_s"],
    }
    if prof["gpus_per_node"]:  # 0 is left out: no --gpus-per-node line for CPU-only clusters
        params["gpus_per_node"] = prof["gpus_per_node"]
    if prof["partition"] is not None:
        params["slurm_partition"] = prof["partition"]
    return params


def executor_kwargs(profile: dict[str, Any]) -> dict[str, Any]:
    """Constructor kwargs for ``submitit.AutoExecutor`` (only ``slurm_max_num_timeout`` today)."""
    return {"slurm_max_num_timeout": validate_profile(profile)["max_num_timeout"]}


def make_executor(profile: dict[str, Any], folder: str | Path, cluster: str | None = "slurm",
                  **overrides: Any):
    """An ``AutoExecutor`` configured from ``profile``; ``overrides`` go to ``update_parameters`` last
    (e.g. ``name=...``). ``cluster`` is passed through (``"slurm"``, ``"local"``, ``"debug"`` or None)."""
    import submitit  # imported lazily: loading profiles must not need submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **executor_kwargs(profile))
    executor.update_parameters(**submitit_parameters(profile))
    if overrides:
        executor.update_parameters(**overrides)
    return executor


def array_chunks(items: Sequence[T], profile: dict[str, Any]) -> Iterator[list[T]]:
    """Split ``items`` into lists short enough for one job array on the profile's cluster.

    SLURM's ``MaxArraySize`` bounds the array *index*: indices run 0..MaxArraySize-1, and submitit numbers
    an array's tasks from 0, so one array may hold at most ``max_array_size`` tasks.
    """
    size = validate_profile(profile)["max_array_size"]
    seq = list(items)
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
