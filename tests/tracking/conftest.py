"""Tests of benchmarks/tracking/: the MLflow view of run records (sqlite and a real server)."""
