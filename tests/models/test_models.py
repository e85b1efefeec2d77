"""Architecture registry: the Backbone contract, registration order, parameter counts, pretrained loading."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.models import available_archs, build_model
from benchmarks.models.__main__ import param_count

ALL_ARCHS = [
    "dann_digits", "mnist_cnn", "mobilenetv2_cifar", "resnet18", "resnet20", "resnet32", "resnet50",
    "resnet56",
]
# a small input each architecture is meant for (torchvision ResNets keep their ImageNet stem at 64 px)
INPUT_SIZE = {"dann_digits": 28, "mnist_cnn": 28, "resnet18": 64, "resnet50": 64}
# (first Conv2d/Linear, last Conv2d/Linear) in named_modules() order: the stem conv and the classifier
BOUNDARIES = {"dann_digits": ("conv1", "classifier.6"), "mnist_cnn": ("body.0", "fc"),
              "mobilenetv2_cifar": ("stem.0", "fc")}
# DomainBed's MNIST_CNN normalises with GroupNorm after each ReLU: no BatchNorm to pair
NO_BATCHNORM = {"mnist_cnn"}
# exact counts at 10 classes, default options (He et al. 2016 quote 0.27M / 0.46M / 0.85M with option A)
PARAMS_10 = {
    "dann_digits": 129_370,
    "mnist_cnn": 373_002,  # 3 input channels here; DomainBed's 1-channel RotatedMNIST network has 371,850
    "mobilenetv2_cifar": 2_236_682,
    "resnet18": 11_181_642,
    "resnet20": 272_474,  # option B (default)
    "resnet32": 464_154,  # option A (default)
    "resnet50": 23_528_522,
    "resnet56": 855_770,  # option B (default)
}


def _input(name: str, batch: int = 2, channels: int = 3) -> torch.Tensor:
    size = INPUT_SIZE.get(name, 32)
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def _build(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    size = INPUT_SIZE.get(name, 32)
    return build_model(name, num_classes, input_size=(size, size), **kwargs)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny batches: on a busy CI box, intra-op threads cost more in synchronisation than they save
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=ALL_ARCHS)
def arch(request) -> tuple[str, nn.Module]:
    return request.param, _build(request.param)


def test_registry_lists_every_arch():
    assert available_archs() == ALL_ARCHS


def test_contract_forward_features_classify(arch):
    name, model = arch
    model.eval()
    x = _input(name)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, model.feature_dim)
    assert logits.shape == (2, 10)
    assert torch.equal(model.classify(feats), logits)


def test_channels_last_matches_contiguous(arch):
    name, model = arch
    model.eval()
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_training_step_reaches_every_parameter(arch):
    # also catches in-place ops on tensors autograd saved (the reason blocks avoid `out += x`)
    name, model = arch
    model.train()
    model.zero_grad()
    nn.functional.cross_entropy(model(_input(name, batch=4)), torch.arange(4)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_first_and_last_layers_are_stem_and_classifier(arch):
    name, model = arch
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert (layers[0][0], layers[-1][0]) == BOUNDARIES.get(name, ("conv1", "fc"))
    assert isinstance(layers[0][1], nn.Conv2d) and layers[0][1].in_channels == 3
    assert isinstance(layers[-1][1], nn.Linear) and layers[-1][1].out_features == 10


def test_every_batchnorm2d_follows_its_conv(arch):
    name, model = arch
    leaves = _leaves(model)
    pairs = [(leaves[i - 1][1], m) for i, (_, m) in enumerate(leaves) if isinstance(m, nn.BatchNorm2d)]
    assert pairs or name in NO_BATCHNORM
    for conv, bn in pairs:
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == bn.num_features


def test_activations_are_non_inplace_modules(arch):
    _, model = arch
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts and not any(m.inplace for m in acts)


def test_domain_head(arch):
    name, model = arch
    head = model.make_domain_head(3).eval()
    assert head(torch.randn(2, model.feature_dim)).shape == (2, 3)
    if name == "dann_digits":  # spec 9.4: 768-100-domains with BN
        assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
        assert (head[0].in_features, head[0].out_features) == (768, 100)
    else:  # AlignQ's Office-31 code: one Linear
        assert isinstance(head, nn.Linear)
    assert not any(h is m for h in head.modules() for m in model.modules())


def test_parameter_count(arch):
    name, model = arch
    assert sum(p.numel() for p in model.parameters()) == PARAMS_10[name]


def test_docs_table_matches_code():
    doc = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"
    rows = re.findall(r"^\| `(\w+)` \| ([\d,]+) \|", doc.read_text(), flags=re.MULTILINE)
    assert {name: int(params.replace(",", "")) for name, params in rows} == PARAMS_10


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56"])
def test_shortcut_options(name):
    depth = int(name[len("resnet") :])
    option_a, option_b = _build(name, shortcut="A"), _build(name, shortcut="B")
    shortcuts_a = [m for n, m in option_a.named_modules() if n.endswith("shortcut")]
    shortcuts_b = [m for n, m in option_b.named_modules() if n.endswith("shortcut")]
    assert sum(p.numel() for m in shortcuts_a for p in m.parameters()) == 0
    option_a_params = {20: 269_722, 32: 464_154, 56: 853_018}[depth]
    assert sum(p.numel() for p in option_a.parameters()) == option_a_params
    projections = [m[0] for m in shortcuts_b if isinstance(m, nn.Sequential)]
    assert len(projections) == 2 and all(c.kernel_size == (1, 1) and c.stride == (2, 2) for c in projections)


def test_dann_digits_sizes_and_grey_input():
    assert _build("dann_digits").feature_dim == 768
    model = build_model("dann_digits", 10, in_channels=1, input_size=(32, 32)).eval()
    assert model.feature_dim == 48 * 5 * 5
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_mobilenet_downsamples_8x_and_width():
    model = _build("mobilenetv2_cifar").eval()
    assert model.head_conv(model.blocks(model.stem(_input("mobilenetv2_cifar")))).shape[-2:] == (4, 4)
    assert param_count("mobilenetv2_cifar", 10, width=0.5) == 700_490
    assert param_count("resnet56", 100) == 861_620  # CIFAR-100-LT, option B


def test_torchvision_resnet_cifar_stem():
    model = build_model("resnet18", 10, cifar_stem=True).eval()
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    stem = model.relu(model.bn1(model.conv1(torch.randn(2, 3, 32, 32))))
    assert model.layer4(model.layer3(model.layer2(model.layer1(stem)))).shape[-2:] == (4, 4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_equals_torchvision(name):
    from benchmarks.data.tv import models as tv_models

    reference = getattr(tv_models, name)(weights=None).eval()
    ours = build_model(name, 1000).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == {"resnet18": 11_689_512, "resnet50": 25_557_032}[name]
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_unknown_name_and_option_errors_are_one_line():
    with pytest.raises(ValueError) as err:
        build_model("resnet21", 10)
    message = str(err.value)
    assert "\n" not in message and "unknown architecture 'resnet21'" in message
    assert all(name in message for name in ALL_ARCHS)
    only_shortcut = r"^unknown option 'depth' for architecture 'resnet20'; valid: shortcut$"
    with pytest.raises(ValueError, match=only_shortcut):
        build_model("resnet20", 10, depth=3)
    with pytest.raises(ValueError, match="shortcut must be one of A, B"):
        build_model("resnet20", 10, shortcut="C")
    with pytest.raises(ValueError, match="neither a file nor a weight set; weight sets: none"):
        build_model("resnet20", 10, pretrained="imagenet")


def test_pretrained_path_round_trip(tmp_path):
    source = _build("resnet20", num_classes=10)
    path = tmp_path / "resnet20.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(123)  # a different init, so equality can only come from the file
    loaded = build_model("resnet20", 10, pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a checkpoint wrapping the state dict, and a new class count: everything but fc is loaded
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    other = build_model("resnet20", 100, pretrained=path)
    assert other.fc.out_features == 100
    assert torch.equal(other.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    with pytest.raises(ValueError, match="missing .*; unexpected") as err:
        build_model("resnet32", 10, pretrained=path)
    assert "\n" not in str(err.value)


def test_imagenet_weights_from_hub_cache(tmp_path, monkeypatch):
    # offline stand-in for the download: the file torchvision expects, placed in the hub cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub cache: $TORCH_HOME/hub/checkpoints
    from benchmarks.data.tv import models as tv_models

    reference = tv_models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = build_model("resnet18", 31, pretrained="imagenet")
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.fc.out_features == 31


def test_imagenet_weights_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError) as err:
        build_model("resnet50", 31, pretrained="imagenet")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "URLError: <urlopen error no network>" in message
