"""Imports every built-in method so its @register runs."""
# The post-training kind (methods/ptq/), imported module by module so each counts as a method file.
import methods.ptq.adaround  # noqa: F401
import methods.ptq.brecq  # noqa: F401
import methods.ptq.qdrop  # noqa: F401
import methods.ptq.rtn  # noqa: F401
import methods.ptq.ttaq  # noqa: F401
from methods import alignq, climbq, dorefa, emaq, emaq_lt, fp, lsq, qtdog  # noqa: F401

TABLE_ORDER = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt", "qtdog",
               "rtn", "adaround", "brecq", "qdrop", "ttaq")  # order of rows in tables
