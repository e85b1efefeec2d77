"""DomainBed's ResNet-50 for domain generalization: ``freeze_bn`` (BatchNorm in eval mode during training) and
``feature_dropout``, alone and under the quantizers that run on it (QT-DoG weight-only; AlignQ, ClimbQ, EmaQ
with their post-BN activation sites)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models import build_model
from benchmarks.run.spec import Recipe
from benchmarks.run.trainer_parts import make_optimizer
from methods import DomainBatch, get_method, prepare
from methods.layers import QuantBatchNorm2d, QuantConv2d

SIZE = 32  # ResNet-50's ImageNet stem takes 32 px (1x1 at the last stage): fast on a CPU


def _net(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet50", 7, input_size=(SIZE, SIZE), **options)


def _batchnorms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _stats(net: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for bn in _batchnorms(net) for t in (bn.running_mean, bn.running_var)]


def _train_steps(net: nn.Module, steps: int = 2, method=None) -> None:
    optimizer = make_optimizer(net, Recipe(epochs=1, lr=1e-3, weight_decay=0.0, optimizer="adam"))
    x, y = torch.rand(6, 3, SIZE, SIZE), torch.arange(6) % 7
    for _ in range(steps):
        net.train()  # what the trainer calls at each epoch
        if method is None:
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
        else:
            method.training_step(net, optimizer, [DomainBatch(x, y, 0)],
                                 lambda p: F.cross_entropy(net(p.x), p.y))


def test_frozen_batchnorm_keeps_its_running_stats_and_trains_its_affine_weights():
    net = _net(freeze_bn=True)
    before, gamma = _stats(net), net.layer1[0].bn1.weight.detach().clone()
    _train_steps(net)
    assert net.training and not any(bn.training for bn in _batchnorms(net))
    assert len(_batchnorms(net)) == 53
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(net)))
    assert all(int(bn.num_batches_tracked) == 0 for bn in _batchnorms(net))
    # DomainBed's freeze_bn only calls eval(): the BN scale and shift stay in the optimizer and learn
    assert not torch.equal(gamma, net.layer1[0].bn1.weight.detach())


def test_without_freeze_bn_the_running_stats_move():
    net = _net()
    before = _stats(net)
    _train_steps(net, steps=1)
    assert all(bn.training for bn in _batchnorms(net))
    assert not all(torch.equal(a, b) for a, b in zip(before, _stats(net)))


def test_feature_dropout_acts_on_the_pooled_features_in_training_only():
    net = _net(feature_dropout=0.5)
    x = torch.rand(2, 3, SIZE, SIZE)
    features = net.features(x)
    assert features.shape == (2, 2048) and bool((features == 0).any())
    net.eval()
    assert torch.equal(net.features(x), net.features(x))
    assert not any(isinstance(m, nn.Dropout) for m in _net().modules())  # default: torchvision's modules only
    with pytest.raises(ValueError, match="feature_dropout=1.5"):
        _net(feature_dropout=1.5)


@pytest.mark.parametrize("name", ["alignq", "climbq", "emaq"])
def test_post_bn_quantizers_keep_training_mode_under_a_frozen_batchnorm(name: str):
    net = _net(freeze_bn=True)
    method = get_method(name)
    prepare(net, method, 4, 4)
    sites = [m for m in net.modules() if isinstance(m, QuantBatchNorm2d)]
    assert len(sites) >= 48  # every BN after a quantized body conv (the stem's too, where the policy allows)
    before = _stats(net)
    _train_steps(net, steps=1, method=method)
    assert not any(bn.training for bn in sites) and all(bn.act_quant.training for bn in sites)
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(net)))
    net.eval()
    assert torch.isfinite(net(torch.rand(2, 3, SIZE, SIZE))).all()


def test_qtdog_quantizes_every_conv_weight_only_on_the_dg_resnet():
    net = _net(freeze_bn=True)
    method = get_method("qtdog", onset_step=0)
    prepare(net, method, 7, 32)
    convs = [m for m in net.modules() if isinstance(m, QuantConv2d)]
    assert len(convs) == 53 and isinstance(net.conv1, QuantConv2d)  # the stem too, as the authors' code
    assert type(net.fc) is nn.Linear and not any(isinstance(m, QuantBatchNorm2d) for m in net.modules())
    assert all(c.input_quant is None or not c.input_quant.enabled for c in convs)  # activations stay FP
    before = _stats(net)
    _train_steps(net, steps=1, method=method)
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(net)))
