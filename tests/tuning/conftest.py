"""Tests of benchmarks/tuning/: Optuna studies, trials, frozen hyper-parameters."""
