"""The slurm launcher against a mocked ``sbatch`` (submitit's own ``MockedSubprocess``, as in submitit's
tests): every QAT array's ``--dependency`` names only its own FP parent's job or array task (none when the
parent is done), arrays split at ``max_array_size``, and the arrays of a wave share ``array_parallelism``.
While watching, a failed parent's dependants are blocked at once and the others go on."""
from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Sequence

from submitit.core.test_core import MockedSubprocess

from benchmarks.launch.options import LaunchOptions, LaunchReport
from benchmarks.launch.requests import JobRequest
from benchmarks.launch.slurm import _watch, launch_slurm, plan_arrays
from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import load_grid
from benchmarks.matrix.launch import GridLaunch, launch_runs
from benchmarks.run.result import Metrics, ResultRecord
from benchmarks.run.rundir import RunDir
from tests.matrix.support import two_parent_grid


class RecordingSbatch(MockedSubprocess):
    """Each ``sbatch`` call's script, kept by the job id the mock hands out."""

    def __init__(self) -> None:
        super().__init__(known_cmds=["srun"])
        self.scripts: dict[str, str] = {}

    def sbatch(self, args: Sequence[str]) -> str:
        text = Path(args[0]).read_text()
        answer = super().sbatch(args)
        self.scripts[self.last_job] = text
        return answer


def _profile(tmp_path: Path, max_array_size: int, parallelism: int = 4) -> str:
    path = tmp_path / "mocked.yaml"
    path.write_text(f"partition: debug\nmax_array_size: {max_array_size}\narray_parallelism: {parallelism}\n")
    return str(path)


def _flags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))


def _array_of(job_id: str) -> str:
    return job_id.split("_")[0]


def test_each_qat_array_waits_for_its_own_parent_only(tmp_path, sbatch):
    """Three FP parents (seeds 0-2), seed 0's already done: its QAT runs wait for nothing; seed 1's and 2's
    each wait for their own parent's array task; chunks of at most two."""
    grid = two_parent_grid(tmp_path, seeds=(0, 1, 2))
    specs = expand(load_grid(str(grid)), "full")
    output = tmp_path / "out"
    done_parent = next(s for s in specs if s.method == "fp" and s.seed == 0)
    RunDir.of(output, done_parent.run_id).path.mkdir(parents=True)
    finished = RunDir.of(output, done_parent.run_id)  # done counts only beside a readable result
    finished.write_result(ResultRecord(run_id=done_parent.run_id, spec=done_parent.to_dict(),
                                       metrics=Metrics()))
    finished.mark_done()
    logs: list[str] = []
    report = launch_runs(specs, "slurm", GridLaunch(output=output, grid="twoparents", wait=False,
                                                    slurm_profile=_profile(tmp_path, 2), log=logs.append))
    assert report.skipped == [done_parent.run_id] and report.blocked == {} and len(report.launched) == 8
    assert "submitting 8 runs to SLURM (2 FP, 6 QAT)" in "\n".join(logs)
    for spec in specs:
        if spec.run_id in report.skipped:
            continue
        job_id = report.job_ids[spec.run_id]
        flags = _flags(sbatch.scripts[_array_of(job_id)])
        parent = spec.parent()
        if parent is None or parent.run_id == done_parent.run_id:
            assert "dependency" not in flags, (spec.method, spec.seed)
        else:  # one array task: the parent's own, never a whole array
            assert flags["dependency"] == f"afterok:{report.job_ids[parent.run_id]}"
            assert re.fullmatch(r"\d+_\d", report.job_ids[parent.run_id])
            assert flags["kill-on-invalid-dep"] == "yes"
    # wave 0: [FP1, FP2] and [lsq0, dorefa0]; wave 1: one array per parent; each chunk <= 2 tasks
    assert {_flags(text)["array"] for text in sbatch.scripts.values()} == {"0-1%2"}
    assert len(sbatch.scripts) == 4
    assert sum("dependency" in _flags(text) for text in sbatch.scripts.values()) == 2


def test_arrays_split_at_max_array_size_and_a_lone_parent_is_a_plain_job(tmp_path, sbatch):
    requests = [JobRequest("parent", operator.add, (1, 2))]
    requests += [JobRequest(f"child{i}", operator.mul, (i, 2), depends_on="parent") for i in range(5)]
    requests += [JobRequest(f"free{i}", operator.add, (i, 1)) for i in range(2)]
    plans = plan_arrays(requests, {"max_array_size": 2, "array_parallelism": 4})
    assert [(p.wave, p.depends_on, [r.key for r in p.requests], p.parallelism) for p in plans] == [
        (0, None, ["parent", "free0"], 2), (0, None, ["free1"], 1),
        (1, "parent", ["child0", "child1"], 1), (1, "parent", ["child2", "child3"], 1),
        (1, "parent", ["child4"], 1)]
    report = launch_slurm(requests, LaunchOptions(folder=tmp_path / "jobs", wait=False, log=lambda _: None,
                                                  slurm_profile=_profile(tmp_path, 2, parallelism=4)))
    parent_job = report.job_ids["parent"]
    children = {_array_of(report.job_ids[f"child{i}"]) for i in range(5)}
    assert len(children) == 3  # 5 dependants below an array size of 2
    for array in children:
        flags = _flags(sbatch.scripts[array])
        assert flags["dependency"] == f"afterok:{parent_job}" and flags.get("array", "0-1%1") == "0-1%1"
    assert "array" not in _flags(sbatch.scripts[_array_of(report.job_ids["child4"])])  # one task: a plain job
    lone = [JobRequest("p", operator.add, (1, 2)), JobRequest("c", operator.add, (3, 4), depends_on="p")]
    alone = launch_slurm(lone, LaunchOptions(folder=tmp_path / "jobs2", wait=False, log=lambda _: None,
                                             slurm_profile=_profile(tmp_path, 2)))
    assert "_" not in alone.job_ids["p"]  # a one-task submission is a plain job: afterok on its id
    assert _flags(sbatch.scripts[alone.job_ids["c"]])["dependency"] == f"afterok:{alone.job_ids['p']}"


class _FakeJob:
    def __init__(self, job_id: str, finished: bool, error: Exception | None = None) -> None:
        self.job_id, self.finished, self.error = job_id, finished, error

    def done(self) -> bool:
        return self.finished

    def exception(self) -> Exception | None:
        return self.error


def test_watch_blocks_a_failed_parents_dependants_at_once():
    """fp1 failed: q1 is blocked without waiting for its job (SLURM cancels it, kill-on-invalid-dep); q0,
    whose parent succeeded, is judged by its own job."""
    requests = [JobRequest("fp0", operator.add), JobRequest("fp1", operator.add),
                JobRequest("q0", operator.add, depends_on="fp0"),
                JobRequest("q1", operator.add, depends_on="fp1")]
    jobs = {"fp0": _FakeJob("7_0", True), "fp1": _FakeJob("7_1", True, RuntimeError("bad checkpoint")),
            "q0": _FakeJob("8", True), "q1": _FakeJob("9", False)}
    report, logs = LaunchReport(), []
    _watch(requests, jobs, LaunchOptions(folder=Path("."), poll_s=0, log=logs.append, progress=lambda: "p"),
           report)
    assert report.failed == {"fp1": "RuntimeError: bad checkpoint"}
    assert report.blocked == {"q1": "fp1 failed: RuntimeError: bad checkpoint"}
    assert "[fp1] FAILED on SLURM (job 7_1): RuntimeError: bad checkpoint" in logs
