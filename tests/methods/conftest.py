"""Tests of methods/: each method against an independent re-expression, the shared invariants, prepare()."""
