"""Imports every built-in method so its @register runs."""
from methods import fp, lsq, dorefa  # noqa: F401
from methods import alignq, climbq, emaq, emaq_lt  # noqa: F401

TABLE_ORDER = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt")  # order of rows in tables
