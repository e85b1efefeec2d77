"""Shared pytest set-up: the SLURM cluster fixture, and one torch thread per test process so that timings
of a 2-core CI machine stay predictable when pytest runs beside other work."""
import torch

pytest_plugins = ["tests.slurm_fixture"]

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
