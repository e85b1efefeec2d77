"""Tests of benchmarks/speed/ and the speed entry scripts: they run (no timing is asserted)."""
