"""Tests of benchmarks/data/: loaders on tiny files in each dataset's native format, splits, long tails."""
