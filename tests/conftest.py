"""Shared pytest set-up: the SLURM cluster fixture, one torch thread in the test process (the tests use tiny
tensors, where thread start-up costs more than it saves; subprocesses the tests start keep the default), and
isolation from MLflow's process-global tracking URI."""
import os
import sys

import pytest
import torch

pytest_plugins = ["tests.slurm_fixture"]

torch.set_num_threads(1)

# Test runs must never be synced into the user's own tracking server.
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _reset_mlflow_tracking_uri():
    """``mlflow.set_tracking_uri()`` also exports ``$MLFLOW_TRACKING_URI`` so that subprocesses inherit it. A
    test that calls it would otherwise point every later subprocess (run_matrix, tune) at that test's
    database."""
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)  # None: forget the URI and unset the variable
    os.environ.pop("MLFLOW_TRACKING_URI", None)
