"""Tests of benchmarks/run/: one run end to end, resume, and results unchanged by speed work."""
