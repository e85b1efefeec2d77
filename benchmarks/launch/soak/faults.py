"""The faults a soak injects, and the launcher processes it starts, kills and restarts.

Faults touch only this soak's jobs (found by their job names) and its own launcher processes (by pid). The
node drain is the one fault other users of the cluster see: it lasts ``DRAIN_S`` seconds and the node is
resumed in a ``finally``.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.run.rundir import run_dirs

REPO = Path(__file__).resolve().parents[3]
DRAIN_S = 3.0
MISSES_BEFORE_ANY = 10

SCANCEL, REQUEUE, DRAIN = "scancel", "requeue", "drain"
KILL_LAUNCHER, SECOND_LAUNCHER, SYNC = "kill_launcher", "second_launcher", "concurrent_sync"
KINDS = (SCANCEL, REQUEUE, DRAIN, KILL_LAUNCHER, SECOND_LAUNCHER, SYNC)


def slurm(*args: str, check: bool = True) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def training_jobs(names: list[str], output: Path) -> list[str]:
    """This soak's running jobs that are training a run (its heartbeat names the job and is not finished),
    as ``squeue`` names them; a job still importing torch or finding its run done is not one of them."""
    training = set()
    for directory in run_dirs(output):
        beat = directory.read_heartbeat() or {}
        if beat.get("slurm_job_id") and not beat.get("finished"):
            training.add(str(beat["slurm_job_id"]))
    rows = slurm("squeue", "-h", "-r", "-t", "RUNNING", "-o", "%A %i", "-n", ",".join(names)).split("\n")
    return [row.split()[1] for row in rows if row.strip() and row.split()[0] in training]


def queued_jobs(names: list[str], state: str | None = None) -> list[str]:
    """This soak's jobs in the queue (``123`` or ``123_4`` for an array task), optionally in one state."""
    command = ["squeue", "-h", "-r", "-o", "%i", "-n", ",".join(names)]
    if state is not None:
        command += ["-t", state]
    return slurm(*command).split()


@dataclass
class Launchers:
    """The ``run_matrix.py --launcher slurm`` processes of a soak, each logging to its own file."""

    output: Path
    logs: Path
    slurm_profile: str = "local"
    env: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)
    started: int = 0

    def start(self, name: str, grid: Path, *extra: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started += 1
        log = self.logs / f"{self.started:03d}-{name}.log"
        command = [sys.executable, str(REPO / "benchmarks/run_matrix.py"), "--grid", str(grid), "--launcher",
                   "slurm", "--slurm-profile", self.slurm_profile, "--output", str(self.output), *extra]
        with open(log, "w") as handle:
            process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                       env={**os.environ, **self.env})
        self.running[f"{name}#{self.started}"] = (process, grid)

    def alive(self) -> list[str]:
        return [key for key, (process, _) in self.running.items() if process.poll() is None]

    def kill_one(self, rng: random.Random) -> str | None:
        """SIGKILL one live launcher and start it again with the same grid; its name, or None if none."""
        live = self.alive()
        if not live:
            return None
        key = rng.choice(live)
        process, grid = self.running[key]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.start(key.split("#")[0] + "-restarted", grid)
        return key

    def wait(self, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        for process, _ in self.running.values():
            process.wait(timeout=max(1.0, deadline - time.time()))

    def stop_all(self) -> None:
        """Kill whatever is still running (only on the way out of a failed soak)."""
        for process, _ in self.running.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class FaultInjector:
    """Injects ``per_kind`` faults of every kind, in random order, one every ``every_s`` seconds."""

    job_names: list[str]
    launchers: Launchers
    main_grid: Path
    per_kind: int
    every_s: float
    rng: random.Random
    log: Callable[[str], None] = print
    requeue_now: bool = False  # let a requeued job start at once instead of after SLURM's requeue delay
    injected: Counter = field(default_factory=Counter)
    hit_training: Counter = field(default_factory=Counter)  # scancels/requeues that stopped a training run
    misses: int = 0
    syncs: list[subprocess.Popen] = field(default_factory=list)

    def plan(self) -> list[str]:
        kinds = [kind for kind in KINDS for _ in range(self.per_kind)]
        self.rng.shuffle(kinds)
        return kinds

    def run(self, until: Callable[[], bool]) -> None:
        """Inject the plan; a fault that finds nothing to hit (no running job) is retried later. Stops early
        when ``until()`` says the grid is over (faults left over are reported as not injected)."""
        todo = self.plan()
        while todo and not until():
            time.sleep(self.every_s)
            kind = todo[0]
            if self.inject(kind):
                todo.pop(0)
                self.injected[kind] += 1
            else:
                self.rng.shuffle(todo)  # e.g. no job running yet: try another kind first
        for process in self.syncs:
            process.wait(timeout=600)

    def inject(self, kind: str) -> bool:
        if kind in (SCANCEL, REQUEUE):
            # a job that trains a run; after MISSES_BEFORE_ANY tries without one, any running job
            running = training_jobs(self.job_names, self.launchers.output)
            hit_training = bool(running)
            if not running and self.misses >= MISSES_BEFORE_ANY:
                running = queued_jobs(self.job_names, "RUNNING")
            if not running:
                self.misses += 1
                return False
            self.misses = 0
            job = self.rng.choice(running)
            if kind == SCANCEL:
                slurm("scancel", job)
            else:
                # a job that ended meanwhile cannot be requeued: then this fault did not happen
                if subprocess.run(["scontrol", "requeue", job], capture_output=True).returncode != 0:
                    return False
                if self.requeue_now:  # SLURM holds a requeued job back (131 s measured here): skip the wait
                    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"],
                                   capture_output=True)
            self.log(f"fault: {kind} {job}" + (" (training a run)" if hit_training else ""))
            if hit_training:
                self.hit_training[kind] += 1
            return True
        if kind == DRAIN:
            node = slurm("sinfo", "-h", "-N", "-o", "%N").split()[0]
            self.log(f"fault: drain {node} for {DRAIN_S:.0f} s")
            drain_briefly(node)
            return True
        if kind == KILL_LAUNCHER:
            killed = self.launchers.kill_one(self.rng)
            if killed is not None:
                self.log(f"fault: SIGKILL launcher {killed}, started again")
            return killed is not None
        if kind == SECOND_LAUNCHER:
            self.launchers.start("second", self.main_grid)
            self.log("fault: a second launcher on the same output")
            return True
        output = self.launchers.output
        sync_log = open(self.launchers.logs / f"sync-{len(self.syncs)}.log", "w")
        self.syncs.append(subprocess.Popen([sys.executable, str(REPO / "benchmarks/sync_mlflow.py"),
                                            "--output", str(output)], cwd=REPO, stdout=sync_log,
                                           stderr=subprocess.STDOUT))
        self.log("fault: a concurrent sync_mlflow.py")
        return True


def drain_briefly(node: str, seconds: float = DRAIN_S) -> None:
    """Drain ``node`` (running jobs go on, nothing new starts) for a few seconds; always resumed."""
    slurm("scontrol", "update", f"nodename={node}", "state=drain", "reason=soak")
    try:
        time.sleep(seconds)
    finally:
        slurm("scontrol", "update", f"nodename={node}", "state=resume")
