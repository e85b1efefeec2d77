"""Tests of benchmarks/launch/: launchers and SLURM (mocked sbatch, and the real localhost cluster)."""
import pytest


@pytest.fixture
def sbatch():
    """sbatch mocked (``test_slurm_mocked.RecordingSbatch``): each call's script, kept by its job id."""
    from submitit.slurm import slurm as submitit_slurm

    from tests.launch.test_slurm_mocked import RecordingSbatch

    mock = RecordingSbatch()
    try:
        with mock.context():
            yield mock
    finally:
        submitit_slurm.SlurmJob.watcher.clear()  # the watcher is shared by every SlurmJob
