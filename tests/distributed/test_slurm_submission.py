"""A data-parallel run through the slurm launcher: the sbatch request (mocked sbatch: tasks per node, nodes,
one GPU per task, its own array), and for real on the one-node cluster: a 2-task CPU run (gloo) starts,
trains and finishes, written by rank 0 only."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Sequence

import pytest
from submitit.core.test_core import MockedSubprocess
from submitit.slurm import slurm as submitit_slurm

from benchmarks.launch.job import RunJob
from benchmarks.launch.options import LaunchOptions
from benchmarks.launch.requests import JobRequest
from benchmarks.launch.slurm import launch_slurm
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec

SPEC = RunSpec(task=TaskSpec("optdigits", test_subsample=100), arch="dann_digits", method="fp",
               recipe=Recipe(epochs=1, batch_size=32, lr=0.05, schedule="cosine", steps_per_epoch=3,
                             processes=2))


def _request(spec: RunSpec, output: Path) -> JobRequest:
    return JobRequest(spec.run_id, RunJob(), (spec.to_dict(), str(output), "ddp", None, "cpu", None), None,
                      spec.recipe.processes, spec.recipe.nodes)


class RecordingSbatch(MockedSubprocess):
    def __init__(self) -> None:
        super().__init__(known_cmds=["srun"])
        self.scripts: list[str] = []

    def sbatch(self, args: Sequence[str]) -> str:
        self.scripts.append(Path(args[0]).read_text())
        return super().sbatch(args)


def _flags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))


def test_a_distributed_run_asks_for_one_task_per_gpu_in_an_array_of_its_own(tmp_path):
    profile = tmp_path / "gpu.yaml"
    profile.write_text("partition: gpu\ngpus_per_node: 1\ncpus_per_task: 8\n")
    eight = dataclasses.replace(SPEC, recipe=dataclasses.replace(SPEC.recipe, processes=8, nodes=2,
                                                                 batch_size=64))
    single = dataclasses.replace(SPEC, recipe=dataclasses.replace(SPEC.recipe, processes=1))
    mock = RecordingSbatch()
    try:
        with mock.context():
            launch_slurm([_request(eight, tmp_path), _request(single, tmp_path)],
                         LaunchOptions(folder=tmp_path / "submitit", slurm_profile=str(profile), wait=False,
                                       log=lambda _: None))
    finally:
        submitit_slurm.SlurmJob.watcher.clear()
    assert len(mock.scripts) == 2  # two resource shapes: two submissions
    flags = [_flags(script) for script in mock.scripts]
    distributed = next(f for f in flags if f.get("ntasks-per-node") == "4")
    assert distributed["nodes"] == "2" and distributed["gpus-per-node"] == "4"  # one GPU per task
    assert "--kill-on-bad-exit=1" in next(s for s in mock.scripts if "ntasks-per-node=4" in s)
    plain = next(f for f in flags if f is not distributed)
    assert plain["gpus-per-node"] == "1" and plain.get("ntasks-per-node", "1") == "1"


@pytest.mark.slurm
def test_a_two_task_run_trains_and_finishes_on_slurm(slurm_cluster, tmp_path):
    output = tmp_path / "out"
    report = launch_slurm([_request(SPEC, output)],
                          LaunchOptions(folder=tmp_path / "submitit", slurm_profile=slurm_cluster.profile,
                                        poll_s=1.0, log=lambda _: None,
                                        succeeded=lambda key: RunDir.of(output, key).is_done()))
    assert not report.failed, report.failed
    directory = RunDir.of(output, SPEC.run_id)
    result = directory.read_result()
    assert result is not None and result.spec["recipe"]["processes"] == 2
    assert result.environment["slurm_job_id"] is not None
    assert result.timings.steps == 3
    logs = sorted(p.name for p in (tmp_path / "submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs  # one log per task: both ranks ran
