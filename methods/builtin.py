"""Imports every built-in method so its @register runs."""
from methods import alignq, climbq, dorefa, emaq, emaq_lt, fp, lsq, qtdog  # noqa: F401

# order of rows in tables
TABLE_ORDER = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt", "qtdog")
