"""Imports every built-in method so its @register runs; the order here is the order used in tables."""
from methods import fp, lsq, dorefa  # noqa: F401
