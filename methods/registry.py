"""Methods are registered by name and chosen by that name everywhere (CLI, grids, records, tables)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from methods.base import QuantMethod

_METHODS: dict[str, type["QuantMethod"]] = {}


def register(name: str) -> Callable[[type["QuantMethod"]], type["QuantMethod"]]:
    def decorate(cls: type["QuantMethod"]) -> type["QuantMethod"]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def available_methods() -> list[str]:
    """Registered names: the built-in ones in the papers' table order, then any others as registered."""
    _load_builtin()
    from methods.builtin import TABLE_ORDER

    known = [name for name in TABLE_ORDER if name in _METHODS]
    return known + [name for name in _METHODS if name not in known]


def method_class(name: str) -> type["QuantMethod"]:
    _load_builtin()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(available_methods())}")
    return _METHODS[name]


def get_method(name: str, **hparams: Any) -> "QuantMethod":
    """Instantiate a registered method with its defaults overridden by ``hparams``."""
    return method_class(name)(**hparams)


def _load_builtin() -> None:
    # Importing the package modules runs their @register decorators (in the documented order).
    import methods.builtin  # noqa: F401
