"""Shared pytest set-up: the SLURM cluster fixture, and one torch thread in the test process (the tests use
tiny tensors, where thread start-up costs more than it saves; subprocesses the tests start keep the default)."""
import torch

pytest_plugins = ["tests.slurm_fixture"]

torch.set_num_threads(1)
