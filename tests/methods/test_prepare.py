"""prepare() on every registered architecture, the layer policy, and the layer report."""
from __future__ import annotations

import pytest
import torch

from benchmarks.models import available_archs, build_model
from methods import DomainBatch, LayerPolicy, calibrate, get_method, prepare
from methods.layers import QuantBatchNorm2d
from tests.helpers import training_step

SIZES = {"dann_digits": (28, 28), "mnist_cnn": (28, 28), "resnet18": (32, 32), "resnet50": (32, 32)}


def _model(arch):
    torch.manual_seed(0)
    return build_model(arch, 10, in_channels=3, input_size=SIZES.get(arch, (32, 32)))


@pytest.mark.parametrize("arch", available_archs())
@pytest.mark.parametrize("method", ["lsq", "alignq"])
def test_prepare_every_arch_and_policy(arch, method):
    net = _model(arch)
    report = prepare(net, get_method(method), 4, 4)
    first, last = report[0], report[-1]
    assert first["role"] == "first" and last["role"] == "last"
    if method == "lsq":  # default policy 8bit/8bit, input-site activations
        assert (first["w_bits"], first["a_bits"], last["w_bits"], last["a_bits"]) == (8, 8, 8, 8)
        assert all(r["w_bits"] == 4 and r["a_bits"] == 4 for r in report[1:-1])
        assert all(r["act_site"] == "input" for r in report)
    elif not any(isinstance(m, torch.nn.BatchNorm2d) for m in _model(arch).modules()):
        # no BatchNorm (MNIST_CNN's GroupNorm): AlignQ has no activation site, and the report says so
        assert first["w_bits"] == 4 and last["kept_fp"]
        assert all(r["a_bits"] == 32 and r["act_site"] == "none" for r in report)
    else:  # AlignQ code convention: stem quantized, classifier FP, activations after BatchNorm
        assert first["w_bits"] == 4 and last["kept_fp"]
        assert any(r["act_site"] == "post_bn" for r in report)
        assert sum(isinstance(m, QuantBatchNorm2d) for m in net.modules()) > 0
    x = torch.randn(2, 3, *SIZES.get(arch, (32, 32)))
    calibrate(net, x)
    assert torch.isfinite(net.eval()(x)).all()


@pytest.mark.parametrize("policy,expected", [(("same", "same"), (4, 4)), (("8bit", "fp"), (8, 32)),
                                             (("fp", "8bit"), (32, 8))])
def test_layer_policy_bits_in_report(policy, expected):
    net = _model("resnet20")
    report = prepare(net, get_method("dorefa"), 4, 4, LayerPolicy(*policy))
    assert (report[0]["w_bits"], report[-1]["w_bits"]) == expected
    assert report[-1]["kept_fp"] == (policy[1] == "fp")


def test_signedness_recorded_after_calibration():
    net = _model("resnet20")
    prepare(net, get_method("lsq"), 4, 4)
    from methods import layer_report

    calibrate(net, torch.randn(4, 3, 32, 32))
    report = layer_report(net)
    assert report[0]["a_signed"] is True  # normalised network input
    assert report[1]["a_signed"] is False  # post-ReLU


def test_invalid_policy_and_bits_are_one_line_errors():
    with pytest.raises(ValueError, match="valid: same, 8bit, fp"):
        LayerPolicy("9bit", "fp")
    with pytest.raises(ValueError, match=r"valid: 2\.\.16 or 32"):
        prepare(_model("resnet20"), get_method("lsq"), 1, 4)


def test_unknown_method_and_hparam():
    with pytest.raises(ValueError, match="unknown method 'foo'; valid: fp, lsq, dorefa"):
        get_method("foo")
    with pytest.raises(ValueError, match="unknown hyper-parameter 'bogus' for method 'dorefa'"):
        get_method("dorefa", bogus=1)


@pytest.mark.parametrize("arch", ["resnet20", "mobilenetv2_cifar"])
def test_step_reaches_all_parameters_on_real_archs(arch):
    from benchmarks.run.trainer_parts import TaskModel
    from methods import BatchContext

    net = _model(arch)
    context = BatchContext(class_prior=torch.full((10,), 0.1))
    method = get_method("lsq")
    prepare(net, method, 4, 4, None, context)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    calibrate(net, x)
    model = TaskModel(net).train()
    training_step(model, method, context, [DomainBatch(x, y, 0)])
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
