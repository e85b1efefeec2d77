"""Tests of benchmarks/launch/: launchers and SLURM (mocked sbatch, and the real localhost cluster)."""
