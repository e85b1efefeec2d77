"""Each TTA method against a re-expression written here by hand on the same tensors, and the invariants:
weights stay quantized (at most 2^k levels), only the adapted parameters change."""
import copy

import pytest
import torch
from torch import nn

from methods import ActQuantizer, Quantizer, WeightQuantizer, quantizers
from methods.tta import InputNorm, get_tta
from methods.tta.abl import BalancedLogits
from tests.helpers import prepared_digits_model

NORM = InputNorm((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture
def quantized():
    """An LSQ W4/A4 digits net (trained BN statistics stand in: set to non-trivial values) and a batch."""
    model, _, _, x, _ = prepared_digits_model("lsq", 4, 4, batch=32)
    torch.manual_seed(1)
    for m in model.net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.net.eval(), x * 2 + 0.3  # a shifted input: the "corrupted" batch


def _batch_stat_copy(net: nn.Module) -> nn.Module:
    """By hand: dropout off, every BN normalises with the batch's own statistics."""
    ref = copy.deepcopy(net).eval()
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.momentum = 0.0  # running estimates untouched; the forward still uses batch statistics
    return ref


def test_source_is_the_frozen_model(quantized):
    net, x = quantized
    before = copy.deepcopy(net.state_dict())
    method = get_tta("source")
    method.setup(net, NORM)
    expected = net(x)
    assert torch.equal(method.adapt(net, x), expected)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_bn_adapt_predicts_with_batch_statistics_and_changes_no_parameter(quantized):
    net, x = quantized
    ref = _batch_stat_copy(net)
    source_logits = net(x)
    params = [p.detach().clone() for p in net.parameters()]
    method = get_tta("bn")
    method.setup(net, NORM)
    logits = method.adapt(net, x)
    assert torch.allclose(logits, ref(x), atol=1e-5)
    assert not torch.allclose(logits, source_logits, atol=1e-3)  # running statistics are no longer used
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))


def test_tent_matches_entropy_and_one_adam_step_by_hand(quantized):
    net, x = quantized
    ref = _batch_stat_copy(net)
    bn_params = [p for m in ref.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in (m.weight, m.bias)]
    logits = ref(x)
    probs = torch.softmax(logits, 1)
    loss = -(probs * torch.log(probs)).sum(1).mean()
    grads = torch.autograd.grad(loss, bn_params)
    # Adam's first step from zero moments: p - lr * g / (|g| + eps), bias corrections cancel exactly
    expected = [p.detach() - 1e-3 * g / (g.abs() + 1e-8) for p, g in zip(bn_params, grads)]

    conv_weights = [m.weight.detach().clone() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    method = get_tta("tent")
    method.setup(net, NORM)
    out = method.adapt(net, x)
    assert torch.allclose(out, logits.detach(), atol=1e-5)  # the prediction is made before the update
    got = [p for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           for p in (m.weight, m.bias)]
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(got, bn_params))
    after = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(torch.equal(a, b) for a, b in zip(conv_weights, after))  # weights untouched


def test_cotta_teacher_is_an_ema_and_restore_one_returns_the_source(quantized):
    net, x = quantized
    method = get_tta("cotta", restore_p=0.0, confidence=0.0)
    method.setup(net, NORM)
    teacher_before = [p.detach().clone() for p in method.teacher.parameters()]
    expected = method.teacher(x).detach()
    target = method.adapt(net, x)
    assert torch.allclose(target, expected)  # confident: the teacher's plain prediction, before the update
    for t_old, t_new, s in zip(teacher_before, method.teacher.parameters(), net.parameters()):
        assert torch.allclose(t_new, 0.999 * t_old + 0.001 * s.detach(), atol=1e-6)

    restoring = get_tta("cotta", restore_p=1.0, confidence=0.0)
    fresh = copy.deepcopy(net)
    restoring.setup(fresh, NORM)
    restoring.adapt(fresh, x)
    for name, p in fresh.named_parameters():
        if name.rsplit(".", 1)[-1] in ("weight", "bias"):
            assert torch.equal(p.detach(), restoring.source_state[name]), name


def test_cotta_averages_augmented_teacher_passes_only_when_unsure(quantized):
    net, x = quantized
    sure = get_tta("cotta", confidence=0.0)
    sure.setup(copy.deepcopy(net), NORM)
    plain = sure.teacher(x)
    assert torch.allclose(sure.teacher_prediction(x), plain)
    unsure = get_tta("cotta", confidence=1.01, augmentations=4)
    unsure.setup(copy.deepcopy(net), NORM)
    averaged = unsure.teacher_prediction(x)
    assert averaged.shape == plain.shape and not torch.allclose(averaged, plain, atol=1e-4)


def test_balanced_logits_by_hand():
    abl = BalancedLogits(3, tau_frequency=1.0, tau_complexity=0.5, momentum=0.9)
    abl.frequency = torch.tensor([0.5, 0.3, 0.2])
    abl.complexity = torch.tensor([0.2, 0.4, 0.6])
    z = torch.tensor([[1.0, 2.0, 3.0]])
    expected = z - torch.log(abl.frequency) + 0.5 * torch.log(abl.complexity / abl.complexity.mean())
    assert torch.allclose(abl.adjust(z), expected)
    logits = torch.tensor([[5.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0]])
    abl.update(logits)
    share = torch.tensor([0.5, 0.5, 0.0])
    assert torch.allclose(abl.frequency, 0.9 * torch.tensor([0.5, 0.3, 0.2]) + 0.1 * share)
    p = logits.softmax(1)
    ent = -(p * p.log()).sum(1)
    assert torch.allclose(abl.complexity[0], 0.9 * 0.2 + 0.1 * ent[:2].mean())
    assert abl.complexity[2] == pytest.approx(0.6)  # a class never predicted keeps its estimate
    off = BalancedLogits(3, tau_frequency=0.0, tau_complexity=0.0)
    assert torch.equal(off.adjust(z), z)


def test_ttaq_adapts_bn_and_activation_steps_only(quantized):
    net, x = quantized
    steps = {n: p.detach().clone() for n, p in net.named_parameters() if ".input_quant." in n or "act" in n}
    weights = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("weight")
               and not isinstance(net.get_submodule(n.rsplit(".", 1)[0]), nn.modules.batchnorm._BatchNorm)}
    method = get_tta("ttaq")
    method.setup(net, NORM)
    for _ in range(2):
        method.adapt(net, x)
    now = dict(net.named_parameters())
    assert steps and any(not torch.equal(v, now[n]) for n, v in steps.items())
    assert all(torch.equal(v, now[n]) for n, v in weights.items())
    frozen = get_tta("ttaq", act_steps=False)
    net2 = copy.deepcopy(quantized[0])
    frozen.setup(net2, NORM)
    trainable = {id(p) for g in frozen.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in trainable for m in net2.modules() if isinstance(m, ActQuantizer)
                   for p in m.parameters())


@pytest.mark.parametrize("name", ["source", "bn", "tent", "cotta", "ttaq"])
def test_weights_stay_quantized_after_adaptation(name, quantized):
    net, x = quantized
    method = get_tta(name, **({"confidence": 0.0} if name == "cotta" else {}))
    method.setup(net, NORM)
    for _ in range(3):
        method.adapt(net, x)
    seen: list[tuple[Quantizer, torch.Tensor]] = []
    hooks = [q.register_forward_hook(lambda m, i, o: seen.append((m, o.detach()))) for q in quantizers(net)]
    net(x)
    for h in hooks:
        h.remove()
    checked = 0
    for q, out in seen:
        if q.enabled:
            assert torch.unique(out).numel() <= 2 ** q.bits, f"{name}: {type(q).__name__} {q.bits} bits"
            checked += isinstance(q, WeightQuantizer)
    assert checked >= 2


def test_unknown_method_and_hparam_fail_in_one_line():
    with pytest.raises(ValueError, match="unknown TTA method 'eata'; valid: source, bn, tent, cotta, ttaq"):
        get_tta("eata")
    with pytest.raises(ValueError, match="unknown tent hyper-parameter 'momentum'; valid: beta, lr"):
        get_tta("tent", momentum=0.9)
