"""Continual test-time adaptation of quantized models behind one interface: ``get_tta(name)``, then
``setup(model, norm)`` once and ``adapt(model, x) -> logits`` per batch (predict, then update)."""
from methods.tta.base import InputNorm, TtaMethod, available_tta, get_tta, register_tta

__all__ = ["InputNorm", "TtaMethod", "available_tta", "get_tta", "register_tta"]
