"""Imports every built-in TTA method so its @register_tta runs (in table order)."""
from methods.tta import source, bn_adapt, tent, cotta, ttaq  # noqa: F401,I001

TTA_ORDER = ("source", "bn", "tent", "cotta", "ttaq")
