"""The SLURM soak test: a grid of short runs launched on SLURM while faults are injected, then checked
against a fault-free launch of the same grid (run by ``slurm/soak.py``; figures in ``docs/operations.md``)."""
