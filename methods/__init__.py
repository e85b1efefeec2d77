"""Quantization methods behind one interface: ``get_method(name)`` then ``prepare(model, method, w, a)``."""
from methods.base import ActQuantizer, LayerPolicy, Quantizer, QuantMethod, WeightQuantizer
from methods.context import BatchContext, DomainBatch
from methods.prepare import calibrate, layer_report, prepare, quantizers
from methods.registry import available_methods, get_method, method_class, register

__all__ = [
    "ActQuantizer", "BatchContext", "DomainBatch", "LayerPolicy", "QuantMethod", "Quantizer",
    "WeightQuantizer",
    "available_methods", "calibrate", "get_method", "layer_report", "method_class", "prepare", "quantizers",
    "register",
]
