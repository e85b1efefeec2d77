"""Invariants every registered method satisfies at every bit width (README.md, "Extending"): at most 2^k
distinct values per quantized tensor, a bit-exact identity at 32 bits, gradients to every trainable parameter,
and the model state (quantizer parameters and buffers included) round-tripping through a checkpoint."""
from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.models import build_model
from methods import (
    ActQuantizer,
    DomainBatch,
    WeightQuantizer,
    available_methods,
    get_method,
    method_class,
    prepare,
    quantizers,
)
from tests.helpers import prepared_digits_model, training_step

QUANT_METHODS = [m for m in available_methods() if m != "fp"]
BITS = [2, 3, 4, 5, 8]


def act_bits(method: str, bits: int) -> int:
    """Weight-only methods (QT-DoG) run with full-precision activations."""
    return bits if method_class(method).quantizes_activations else 32


def _capture_outputs(model):
    seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = []
    for q in quantizers(model):
        hooks.append(q.register_forward_hook(lambda mod, inp, out: seen.append((mod, out.detach()))))
    return seen, hooks


@pytest.mark.parametrize("method", QUANT_METHODS)
@pytest.mark.parametrize("bits", BITS)
def test_at_most_2_to_the_k_levels(method, bits):
    model, meth, context, x, y = prepared_digits_model(method, bits, act_bits(method, bits))
    seen, hooks = _capture_outputs(model.net)
    model.train()
    context.set_batch(y, 0)
    model.net(x)
    model.eval()
    context.set_batch(None, 0)
    model.net(x)
    for h in hooks:
        h.remove()
    checked = {"weight": 0, "act": 0}
    for module, out in seen:
        if not module.enabled:
            continue
        # A quantizer with a step per output channel (QT-DoG, PTQ weights) keeps 2^k levels in each channel.
        slices = list(out) if getattr(module, "per_channel", False) else [out]
        levels = max(torch.unique(part).numel() for part in slices)
        what = f"{method} {type(module).__name__} {module.bits} bits"
        assert levels <= 2**module.bits, f"{what}: {levels} levels"
        checked["weight" if isinstance(module, WeightQuantizer) else "act"] += 1
    assert checked["weight"] > 0 and (checked["act"] > 0 or not meth.quantizes_activations)


@pytest.mark.parametrize("method", available_methods())
def test_32_bits_is_bit_identical(method):
    torch.manual_seed(0)
    reference = build_model("dann_digits", 10, in_channels=3, input_size=(28, 28)).eval()
    quantized = copy.deepcopy(reference)
    prepare(quantized, get_method(method), 32, 32)
    x = torch.randn(8, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(reference(x), quantized(x))


@pytest.mark.parametrize("method", available_methods())
def test_training_step_reaches_every_parameter(method):
    model, meth, context, x, y = prepared_digits_model(method, 4, act_bits(method, 4))
    model.train()
    training_step(model, meth, context, [DomainBatch(x, y, 0)])
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{method}: no gradient for {missing}"
    quantizer_params = [p for q in quantizers(model.net) for p in q.parameters()]
    assert all(p.grad is not None for p in quantizer_params)


@pytest.mark.parametrize("method", available_methods())
def test_checkpoint_round_trip(method):
    model, meth, context, x, y = prepared_digits_model(method, 4, act_bits(method, 4), num_domains=2)
    model.train()
    for _ in range(2):
        training_step(model, meth, context, [DomainBatch(x, y, 0), DomainBatch(x.flip(0), None, 1)])
    state, method_state = copy.deepcopy(model.state_dict()), copy.deepcopy(meth.state_dict())
    fresh, fresh_method, fresh_context, _, _ = prepared_digits_model(method, 4, act_bits(method, 4),
                                                                     num_domains=2, seed=1)
    fresh.load_state_dict(state)
    fresh_method.load_state_dict(method_state)
    model.eval(), fresh.eval()
    for ctx in (context, fresh_context):
        ctx.set_batch(None, 1)
    with torch.no_grad():
        assert torch.equal(model.net(x), fresh.net(x))
    for q_old, q_new in zip(quantizers(model.net), quantizers(fresh.net)):
        if isinstance(q_old, ActQuantizer) and q_old.enabled:  # a 32-bit one is an identity
            assert q_old.signed == q_new.signed and bool(q_new.initialized)
