"""A method file imports shared machinery (``methods.cdf``, ``methods.admm``, ``methods.homovar``, …), never a
sibling method file. The method files are the modules ``methods/builtin.py`` imports to register them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

METHODS = Path(__file__).resolve().parents[2] / "methods"


def imported_modules(source: str, package: str = "methods") -> set[str]:
    """Every ``methods.*`` module a source imports, anywhere in it (also inside functions):
    ``import methods.x``, ``from methods.x import y``, ``from methods import x`` (counted as ``methods.x``)
    and the relative forms."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import inside the package
                base = f"{package}.{base}" if base else package
            found.add(base)
            if base == package:
                found.update(f"{package}.{alias.name}" for alias in node.names)
    return {name for name in found if name == package or name.startswith(package + ".")}


def method_files() -> list[str]:
    """Module names of the registered method files, read from ``methods/builtin.py``."""
    modules = sorted(imported_modules((METHODS / "builtin.py").read_text()) - {"methods"})
    assert modules, "methods/builtin.py imports no method file"
    return modules


def test_builtin_lists_every_registered_method_file():
    from methods.registry import _METHODS, available_methods

    available_methods()
    registering = {cls.__module__ for cls in _METHODS.values() if cls.__module__.startswith("methods.")}
    assert registering <= set(method_files())
    assert {"methods.fp", "methods.lsq", "methods.dorefa", "methods.alignq", "methods.climbq", "methods.emaq",
            "methods.emaq_lt"} <= set(method_files())


@pytest.mark.parametrize("module", method_files())
def test_method_file_imports_no_sibling_method(module):
    path = METHODS / f"{module.removeprefix('methods.').replace('.', '/')}.py"
    siblings = set(method_files()) - {module}
    assert not imported_modules(path.read_text()) & siblings, f"{path.name} imports a sibling method file"


def test_the_check_sees_every_import_form():
    source = """
import methods.alignq
from methods.climbq import x
from methods import emaq, cdf
from .lsq import y
from . import dorefa

def later():
    from methods.fp import z
"""
    assert imported_modules(source) == {"methods", "methods.alignq", "methods.climbq", "methods.emaq",
                                        "methods.cdf", "methods.lsq", "methods.dorefa", "methods.fp"}
    assert imported_modules("import torch\nfrom torch import nn\nimport methodsx\n") == set()
