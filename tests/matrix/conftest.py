"""Tests of benchmarks/matrix/: grids, expansion, and whole grids through the launchers."""
