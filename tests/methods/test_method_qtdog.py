"""QT-DoG (methods/qtdog.py): weight-only per-channel LSQ switched on at an onset step, on DomainBed's
MNIST_CNN."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models import build_model
from benchmarks.run.spec import Recipe
from benchmarks.run.trainer_parts import make_optimizer
from methods import DomainBatch, LayerPolicy, get_method, prepare
from methods.layers import QuantConv2d
from methods.qtdog import ChannelLsqWeightQuantizer, quantized_convs

BITS = 3


def _setup(onset: int, rebuild: bool = True, bits: int = BITS, policy: LayerPolicy | None = None):
    torch.manual_seed(0)
    net = build_model("mnist_cnn", 10, in_channels=1, input_size=(12, 12))
    method = get_method("qtdog", onset_step=onset, rebuild_optimizer=rebuild)
    prepare(net, method, bits, 32, policy)
    optimizer = make_optimizer(net, Recipe(epochs=1, lr=1e-3, weight_decay=0.0, optimizer="adam"))
    x, y = torch.rand(16, 1, 12, 12), torch.arange(16) % 10
    return net, method, optimizer, x, y


def _step(net, method, optimizer, x, y):
    return method.training_step(net, optimizer, [DomainBatch(x, y, 0)],
                                lambda p: F.cross_entropy(net(p.x), p.y))


def _levels_per_channel(layer: QuantConv2d) -> int:
    w = layer.weight_quant(layer.weight).detach()
    return max(torch.unique(channel).numel() for channel in w)


def test_no_weight_is_quantized_before_onset_and_every_conv_is_after():
    net, method, optimizer, x, y = _setup(onset=2)
    convs = [layer for layer, _ in quantized_convs(net)]
    assert len(convs) == 4  # the stem included, as the authors' code
    for _ in range(2):
        _step(net, method, optimizer, x, y)
        for layer in convs:
            assert torch.equal(layer.weight_quant(layer.weight), layer.weight)  # identity before onset
    _step(net, method, optimizer, x, y)  # the onset step
    for layer in convs:
        assert _levels_per_channel(layer) <= 2**BITS
        assert not torch.equal(layer.weight_quant(layer.weight), layer.weight)


def test_activations_and_linear_layers_stay_full_precision():
    net, method, optimizer, x, y = _setup(onset=0)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, inp: seen.append((m, inp[0]))) for layer, _ in
             quantized_convs(net)]
    net(x)
    for h in hooks:
        h.remove()
    assert len(seen) == 4
    for layer, inp in seen:
        assert not layer.input_quant.enabled and torch.equal(layer.input_quant(inp), inp)
    assert type(net.fc) is nn.Linear  # the classifier is never swapped
    with pytest.raises(ValueError, match="valid: 32"):
        prepare(build_model("mnist_cnn", 10, in_channels=1, input_size=(12, 12)), get_method("qtdog"), 7, 8)


def test_onset_rebuilds_the_optimizer_over_every_parameter_and_steps_learn():
    net, method, optimizer, x, y = _setup(onset=1)
    _step(net, method, optimizer, x, y)
    assert optimizer.state  # Adam moments of the FP phase
    steps_before = [q.step.detach().clone() for _, q in quantized_convs(net)]
    _step(net, method, optimizer, x, y)  # onset: steps re-initialised, optimizer state cleared, then a step
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert all(id(p) in in_optimizer for p in net.parameters() if p.requires_grad), trainable
    assert any(name.endswith("weight_quant.step") for name in trainable)
    steps_onset = [q.step.detach().clone() for _, q in quantized_convs(net)]
    assert all(not torch.equal(a, b) for a, b in zip(steps_before, steps_onset))
    assert all(optimizer.state[q.step]["step"] == 1 for _, q in quantized_convs(net))  # fresh moments
    _step(net, method, optimizer, x, y)
    assert all(not torch.equal(a, q.step) for a, (_, q) in zip(steps_onset, quantized_convs(net)))


def test_code_faithful_mode_freezes_quantized_weights_and_steps():
    net, method, optimizer, x, y = _setup(onset=1, rebuild=False)
    _step(net, method, optimizer, x, y)
    _step(net, method, optimizer, x, y)  # onset
    frozen = {name: p.detach().clone() for name, p in net.named_parameters() if "body" in name and
              ("weight_quant" in name or name.endswith(".weight") and p.dim() == 4)}
    fc = net.fc.weight.detach().clone()
    _step(net, method, optimizer, x, y)
    params = dict(net.named_parameters())
    assert frozen and all(torch.equal(params[n], v) for n, v in frozen.items())
    assert not torch.equal(net.fc.weight, fc)  # the FP classifier still learns, as in their code


def test_stem_can_stay_full_precision_and_bits_are_free():
    net, *_ = _setup(onset=0, bits=7, policy=LayerPolicy("fp", "same"))
    layers = quantized_convs(net)
    assert len(layers) == 3 and type(net.body[0]) is nn.Conv2d
    assert all(q.bits == 7 and _levels_per_channel(layer) <= 2**7 for layer, q in layers)
    assert all(isinstance(q, ChannelLsqWeightQuantizer) and q.step.shape[0] == layer.out_channels
               for layer, q in layers)


def test_invalid_options_fail_with_one_line():
    with pytest.raises(ValueError, match="onset_step"):
        get_method("qtdog", onset_step=-1)
    with pytest.raises(ValueError, match="rebuild_optimizer"):
        get_method("qtdog", rebuild_optimizer="yes")
