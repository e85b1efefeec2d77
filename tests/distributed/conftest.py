"""Tests of data-parallel training (benchmarks/run/distributed*.py) on the CPU with gloo, mid-epoch resume,
the ImageNet folder loader and the distributed SLURM submission."""
