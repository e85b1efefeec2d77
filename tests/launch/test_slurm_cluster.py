"""Jobs through the real one-node SLURM cluster (slurm/cluster.sh): plain sbatch arrays, submitit jobs and
arrays, a failing job, and sacct accounting. Run with
``python -m pytest -m slurm tests/launch/test_slurm_cluster.py``.
Needs the ``slurm_cluster`` fixture from tests/slurm_fixture.py (registered in tests/conftest.py)."""
from __future__ import annotations

import operator
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import FailedJobError

from benchmarks.launch.profiles import load_slurm_profile, make_executor, validate_profile

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

JOB_TIMEOUT_S = 60


def _sacct_states(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _wait_sacct(job_id: str, want: str, n: int = 1, limit_s: float = 20) -> dict[str, str]:
    """Accounting reaches slurmdbd asynchronously: poll until ``n`` records are in state ``want``."""
    deadline = time.monotonic() + limit_s
    while True:
        states = _sacct_states(job_id)
        if len(states) >= n and all(s.split()[0] == want for s in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(0.3)


def _submitit_state(job: submitit.Job, limit_s: float = 20) -> str:
    deadline = time.monotonic() + limit_s
    while True:
        state = job.get_info(mode="force").get("State", "UNKNOWN")
        if state not in ("UNKNOWN", "PENDING", "RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def _executor(folder: Path, slurm_cluster, **overrides) -> submitit.AutoExecutor:
    profile = load_slurm_profile(slurm_cluster.profile)
    return make_executor(profile, folder, cluster="slurm", name="qbench-test", **overrides)


def test_profile_matches_cluster(slurm_cluster):
    profile = load_slurm_profile(slurm_cluster.profile)
    assert profile["partition"] == slurm_cluster.partition
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    max_array = next(line.split("=")[1].strip() for line in config.splitlines()
                     if line.startswith("MaxArraySize"))
    assert int(max_array) == profile["max_array_size"]
    parts = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, check=True).stdout
    assert f"{slurm_cluster.partition}* up" in parts


def test_sbatch_array_writes_files(tmp_path, slurm_cluster):
    script = 'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID" > "out_$SLURM_ARRAY_TASK_ID.txt"'
    proc = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--array=0-2", f"--partition={slurm_cluster.partition}",
         "--mem=100M", "--time=2", f"--output={tmp_path}/slurm-%A_%a.out", f"--chdir={tmp_path}",
         "--job-name=qbench-sbatch", f"--wrap={script}"],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    array_id = proc.stdout.strip().split(";")[0]
    for task in range(3):
        assert (tmp_path / f"out_{task}.txt").read_text().strip() == f"task {task} of {array_id}"
    states = _wait_sacct(array_id, "COMPLETED", n=3)
    assert sorted(states) == [f"{array_id}_{t}" for t in range(3)], states
    assert all(s == "COMPLETED" for s in states.values()), states


def test_submitit_job_returns_value(tmp_path, slurm_cluster):
    executor = _executor(tmp_path, slurm_cluster)
    # A repo function, so the job must import the repo's package with the repo's python.
    job = executor.submit(validate_profile, {"partition": "debug", "mem_gb": 1})
    env_job = executor.submit(os.getenv, "SLURM_JOB_ID")
    result = job.result()
    assert result["partition"] == "debug" and result["mem_gb"] == 1.0
    assert env_job.result() == env_job.job_id  # it really ran as that SLURM job
    # submitit's own view, read from sacct (job.state is cached; force a fresh sacct call).
    assert _submitit_state(job) == "COMPLETED"


def test_submitit_map_array(tmp_path, slurm_cluster):
    executor = _executor(tmp_path, slurm_cluster)
    jobs = executor.map_array(operator.mul, [1, 2, 3], [10, 20, 30])
    assert [j.result() for j in jobs] == [10, 40, 90]
    array_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(array_ids) == 1, [j.job_id for j in jobs]
    assert sorted(j.job_id.split("_")[1] for j in jobs) == ["0", "1", "2"]


def test_submitit_failing_job_raises(tmp_path, slurm_cluster):
    executor = _executor(tmp_path, slurm_cluster)
    job = executor.submit(operator.truediv, 1, 0)
    with pytest.raises(FailedJobError) as info:
        job.result()
    assert "ZeroDivisionError" in str(info.value)
    assert _submitit_state(job) == "FAILED"
    assert issubclass(FailedJobError, submitit.core.utils.UncompletedJobError)


def test_sacct_reports_completed(tmp_path, slurm_cluster):
    proc = subprocess.run(
        # No --wait here (sbatch --wait polls with a back-off up to 10 s): sacct itself is polled below.
        ["sbatch", "--parsable", f"--partition={slurm_cluster.partition}", "--mem=100M",
         "--time=2", f"--output={tmp_path}/slurm-%j.out",
         f"--wrap={sys.executable} -c 'import sys; print(sys.version)'"],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert _wait_sacct(job_id, "COMPLETED", limit_s=JOB_TIMEOUT_S) == {job_id: "COMPLETED"}
    assert (tmp_path / f"slurm-{job_id}.out").read_text().startswith(sys.version.split()[0])
