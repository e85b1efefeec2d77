"""``prepare``: swap a float CNN's layers for quantized ones by type (no tracing), and report what was done.

Rules, for any torchvision or custom CNN whose modules are registered in data-flow order:
* The quantizable layers are its Conv2d and Linear modules in ``named_modules()`` order; the first is the
  *first* layer, the last is the *last* layer (the classifier). The layer policy sets their bits.
* Layers whose type the method does not quantize are kept in full precision (reported, not hidden).
* ``act_site == "input"``: each quantized layer quantizes its own input (signed range decided from data).
* ``act_site == "post_bn"``: each BatchNorm2d that directly follows a quantized Conv2d (same channel count,
  registered right after it) quantizes its output, at that conv's activation bits.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.base import ActQuantizer, LayerPolicy, Quantizer, QuantMethod
from methods.context import BatchContext
from methods.layers import QuantBatchNorm2d, QuantConv2d, QuantLinear
from methods.quant import check_bits, is_full_precision

LayerReport = list[dict[str, Any]]


def prepare(model: nn.Module, method: QuantMethod, w_bits: int, a_bits: int,
            layer_policy: LayerPolicy | None = None, context: BatchContext | None = None) -> LayerReport:
    """Quantize ``model`` in place for ``method`` at W/A bits; returns the layer report.

    Call it after loading the full-precision weights: weight quantizers initialise from them. ``context``
    (number of domains, class prior) is shared by all quantizers; the trainer fills it per batch.
    """
    check_bits(w_bits, "weight bits")
    check_bits(a_bits, "activation bits")
    policy = layer_policy or method.default_layer_policy
    context = context if context is not None else BatchContext()
    layers = [(name, m) for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    if not layers:
        raise ValueError("model has no Conv2d or Linear layer to quantize")
    plan: dict[str, tuple[int, int, str]] = {}
    for index, (name, module) in enumerate(layers):
        role = "first" if index == 0 else "last" if index == len(layers) - 1 else "body"
        wb, ab = policy.bits_for(role, w_bits, a_bits)
        if not method.quantizes or not isinstance(module, method.quantized_types):
            wb, ab = 32, 32
        plan[name] = (wb, ab, role)

    swaps: dict[str, nn.Module] = {}
    previous_conv: tuple[str, nn.Conv2d] | None = None
    for name, module in model.named_modules():
        if name in plan:
            wb, ab, _ = plan[name]
            quantized = not (is_full_precision(wb) and is_full_precision(ab))
            if quantized:
                swaps[name] = _quantized_layer(module, method, wb, ab)
            previous_conv = (name, module) if isinstance(module, nn.Conv2d) else None
        elif type(module) is nn.BatchNorm2d and method.act_site == "post_bn":
            if previous_conv is not None and previous_conv[1].out_channels == module.num_features:
                ab = plan[previous_conv[0]][1]
                if not is_full_precision(ab):
                    swaps[name] = QuantBatchNorm2d.from_float(module, method.act_quantizer(ab))
            previous_conv = None
    for name, new in swaps.items():
        _set_submodule(model, name, new)
    for q in model.modules():
        if isinstance(q, Quantizer):
            q.context = context
    # Plain attributes, not submodules or buffers (setattr: nn.Module's __setattr__ is typed for those).
    setattr(model, "quant_context", context)
    setattr(model, "layer_plan", plan)
    method.attach(model, context)
    return layer_report(model)


def _quantized_layer(module: nn.Module, method: QuantMethod, wb: int, ab: int) -> nn.Module:
    if not isinstance(module, (nn.Conv2d, nn.Linear)):  # the plan holds only Conv2d and Linear layers
        raise TypeError(f"cannot quantize a {type(module).__name__}: only Conv2d and Linear layers")
    weight_quant = method.weight_quantizer(wb)
    weight_quant.init_from_weight(module.weight.detach())
    input_quant = method.act_quantizer(ab) if method.act_site == "input" else None
    if isinstance(module, nn.Conv2d):
        return QuantConv2d.from_float(module, weight_quant, input_quant)
    return QuantLinear.from_float(module, weight_quant, input_quant)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def layer_report(model: nn.Module) -> LayerReport:
    """One row per Conv2d/Linear: its bits, where activations are quantized, role, and whether kept FP."""
    plan: dict[str, tuple[int, int, str]] = getattr(model, "layer_plan", {})
    post_bn = {name: m.act_quant for name, m in model.named_modules() if isinstance(m, QuantBatchNorm2d)}
    rows: LayerReport = []
    modules = list(model.named_modules())
    for index, (name, module) in enumerate(modules):
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        following = next((n for n, _ in modules[index + 1:] if not n.startswith(name + ".")), None)
        wb, ab, role = plan.get(name, (32, 32, "body"))
        quant_layer = module if isinstance(module, (QuantConv2d, QuantLinear)) else None
        quantized = quant_layer is not None
        act_site, act_q = "none", None
        if quant_layer is not None and quant_layer.input_quant is not None:
            act_site, act_q = "input", quant_layer.input_quant
        elif following in post_bn:
            act_site, act_q = "post_bn", post_bn[following]
        rows.append({
            "name": name,
            "type": type(module).__name__.replace("Quant", ""),
            "w_bits": quant_layer.weight_quant.bits if quant_layer is not None else 32,
            "a_bits": act_q.bits if act_q is not None else 32,
            "act_site": act_site,
            "a_signed": act_q.signed if act_q is not None else None,
            "role": role,
            "kept_fp": not quantized and act_q is None,
        })
    return rows


def quantizers(model: nn.Module) -> list[Quantizer]:
    return [m for m in model.modules() if isinstance(m, Quantizer)]


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Initialise activation quantizers (sign, LSQ steps) from one *training* batch, without changing BN
    statistics or any weight: the model runs in eval mode with the quantizers in calibration mode."""
    acts = [q for q in quantizers(model) if isinstance(q, ActQuantizer)]
    was_training = model.training
    model.eval()
    for q in acts:
        q.calibrating = True
    try:
        model(x)
    finally:
        for q in acts:
            q.calibrating = False
        model.train(was_training)
