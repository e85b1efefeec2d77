"""The soak: launch the soak grids on SLURM while injecting faults, relaunch until they settle, judge.

1. The fault-free reference: both grids through the ``debug`` launcher, in one process per grid (the same
   CPU results as SLURM jobs when both use one thread: ``OMP_NUM_THREADS=1`` is set for every process of
   the soak; with different thread counts the float sums, and so the metrics, differ in the last digits).
2. Round 1: a ``run_matrix.py --launcher slurm`` per grid on one output, while :class:`FaultInjector`
   scancels and requeues running jobs, drains the node, SIGKILLs a launcher (and starts it again), starts a
   second launcher and concurrent MLflow syncs.
3. Once no launcher and none of the soak's jobs is left, the grids are launched again (no faults) until
   every run is done or failed for good; then MLflow is synced once more and :func:`verdict.judge` compares
   with the reference.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.launch.soak.faults import REPO, FaultInjector, Launchers, queued_jobs
from benchmarks.launch.soak.grid import SoakSize, write_grids
from benchmarks.launch.soak.verdict import Verdict, judge, mlflow_runs_per_id
from benchmarks.matrix.expand import expand, states
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunState
from benchmarks.run.spec import RunSpec

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETTLED = (RunState.DONE, RunState.FAILED)


@dataclass
class SoakConfig:
    size: SoakSize
    work: Path
    seed: int = 0
    per_kind: int = 2  # faults of each kind
    every_s: float = 4.0  # seconds between faults
    slurm_profile: str = "local"
    max_rounds: int = 4  # relaunches after the faulty round
    round_timeout_s: float = 1800.0
    requeue_now: bool = False  # the short CI soak cannot afford SLURM's ~2 min hold of a requeued job
    log: Callable[[str], None] = print


@dataclass
class SoakReport:
    verdict: Verdict
    faults: dict[str, int]
    hit_training: dict[str, int]  # of the scancels and requeues, those that stopped a run mid-training
    rounds: int
    reference_s: float
    soak_s: float
    launchers_started: int
    tasks_submitted: int  # SLURM jobs/array tasks of all launches (a relaunch resubmits runs whose job died)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        v = self.verdict
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items()))
        return [f"runs {v.runs} (done {v.done}, diverged as planned {v.runs - v.done - len(v.lost)})",
                f"faults injected: {sum(self.faults.values())} ({faults}); one run diverges by design "
                f"(tried {v.diverged_attempts} times)",
                "scancel/requeue that stopped a run while it trained: "
                + ", ".join(f"{kind} {self.hit_training.get(kind, 0)}" for kind in ("scancel", "requeue")),
                f"launcher processes started {self.launchers_started}, SLURM tasks submitted "
                f"{self.tasks_submitted}; relaunch rounds after the faults {self.rounds}",
                f"lost {len(v.lost)}, duplicated {len(v.duplicated)}, mismatched {len(v.mismatched)}, "
                f"MLflow missing {len(v.mlflow_missing)}, MLflow duplicated {len(v.mlflow_duplicated)}",
                f"wall time: soak {self.soak_s:.0f} s, fault-free reference {self.reference_s:.0f} s",
                *(f"  lost {r}" for r in v.lost), *(f"  duplicated {r}" for r in v.duplicated),
                *(f"  mismatched {r}" for r in v.mismatched), *self.notes]


def run_soak(config: SoakConfig) -> SoakReport:
    os.environ.update(THREADS)  # every launcher, job and reference worker inherits it
    rng = random.Random(config.seed)
    tag = f"{os.getpid()}{rng.randrange(16**4):04x}"
    main, diverging = write_grids(config.work / "grids", config.size, tag)
    specs = _specs(main) + [s for s in _specs(diverging) if s.method != "fp"]
    run_ids = list(dict.fromkeys(s.run_id for s in specs))
    diverging_id = next(s.run_id for s in _specs(diverging) if s.method != "fp")
    reference, output = config.work / "reference", config.work / "soak"

    start = time.time()
    for grid in (main, diverging):
        _reference_launch(grid, reference, config.work / "logs")
    reference_s = time.time() - start
    config.log(f"reference: {len(run_ids)} runs in {reference_s:.0f} s")

    start = time.time()
    names = [f"qbench-soak-{tag}", f"qbench-soakdiv-{tag}"]
    launchers = Launchers(output, config.work / "logs", config.slurm_profile)
    injector = FaultInjector(names, launchers, main, config.per_kind, config.every_s, rng, config.log,
                             config.requeue_now)
    try:
        launchers.start("main", main)
        launchers.start("diverging", diverging)
        injector.run(until=lambda: not launchers.alive())
        _drain_round(launchers, names, config.round_timeout_s)
        rounds = 0
        while not _settled(specs, output) and rounds < config.max_rounds:
            rounds += 1
            config.log(f"relaunch round {rounds}: {_unsettled(specs, output)}")
            launchers.start("relaunch-main", main)
            launchers.start("relaunch-diverging", diverging)
            _drain_round(launchers, names, config.round_timeout_s)
    finally:
        launchers.stop_all()
    _sync(output, config.work / "logs")
    soak_s = time.time() - start
    counts = mlflow_runs_per_id(f"sqlite:///{output.resolve() / 'mlflow.db'}")
    verdict = judge(run_ids, diverging_id, output, reference, counts)
    report = SoakReport(verdict, dict(injector.injected), dict(injector.hit_training), rounds, reference_s,
                        soak_s, launchers.started, tasks_submitted(launchers.logs))
    missing = {kind for kind in ("scancel", "requeue", "drain", "kill_launcher", "second_launcher",
                                 "concurrent_sync") if injector.injected[kind] < config.per_kind}
    if missing:
        report.notes.append(f"note: fewer faults than planned of {', '.join(sorted(missing))} (the grid "
                            "finished first)")
    return report


def tasks_submitted(logs: Path) -> int:
    """SLURM tasks submitted by the soak's launchers, from their ``slurm: job N (K task(s))`` lines."""
    pattern = re.compile(r"^slurm: job \d+ \((\d+) task", re.MULTILINE)
    return sum(int(k) for log in logs.glob("[0-9]*.log") for k in pattern.findall(log.read_text()))


def _specs(grid: Path) -> list[RunSpec]:
    return expand(load_grid(str(grid)), "full")


def _reference_launch(grid: Path, output: Path, logs: Path) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"reference-{grid.stem}.log", "w") as handle:
        subprocess.run([sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", str(grid),
                        "--launcher", "debug", "--output", str(output), "--no-sync"],
                       cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False, timeout=3600)


def _drain_round(launchers: Launchers, names: list[str], timeout_s: float) -> None:
    """Wait for every launcher, then for the soak's jobs they left queued (a killed launcher's jobs)."""
    launchers.wait(timeout_s)
    deadline = time.time() + timeout_s
    while queued_jobs(names) and time.time() < deadline:
        time.sleep(2)


def _settled(specs: list[RunSpec], output: Path) -> bool:
    return all(state in SETTLED for state in states(specs, output).values())


def _unsettled(specs: list[RunSpec], output: Path) -> str:
    counts: dict[str, int] = {}
    for state in states(specs, output).values():
        if state not in SETTLED:
            counts[state.value] = counts.get(state.value, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _sync(output: Path, logs: Path) -> None:
    with open(logs / "final-sync.log", "w") as handle:
        subprocess.run([sys.executable, str(REPO / "benchmarks/sync_mlflow.py"), "--output", str(output)],
                       cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False, timeout=600)

