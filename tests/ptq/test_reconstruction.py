"""Reconstruction does what it is for: a block's output error falls below round-to-nearest's on a fixed
calibration batch, and every PTQ method keeps at most 2^k levels per tensor."""
from __future__ import annotations

import pytest
import torch

from methods import quantizers
from methods.ptq.quantizers import PtqWeightQuantizer
from methods.ptq.units import recon_units
from tests.ptq.support import prepared, quiet

BLOCK = "layer1.0"  # the first residual block of ResNet-20


def _block_error(net, fp, x: torch.Tensor) -> float:
    """‖B̂(x) − B(x)‖² of the block on a fixed input (the same for every method)."""
    block, fp_block = net.get_submodule(BLOCK), fp.get_submodule(BLOCK)
    with torch.no_grad():
        return float((block(x) - fp_block(x)).pow(2).sum(1).mean())


def _block_input(fp, calib: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return fp.relu(fp.bn1(fp.conv1(calib)))


@pytest.mark.slow
@pytest.mark.parametrize("method,hparams", [
    ("brecq", {"iters": 60, "iters_act": 0}),
    ("brecq", {"iters": 60, "iters_act": 0, "loss": "fisher_diag"}),
    ("qdrop", {"iters": 60}),
])
def test_reconstruction_lowers_block_error_against_rtn(method, hparams):
    rtn, fp, rtn_method, calib = prepared("rtn", 2, 4, arch="resnet20", size=8)
    rtn_method.reconstruct(rtn, fp, calib, seed=0, log=quiet)
    x = _block_input(fp, calib)
    net, fp2, meth, _ = prepared(method, 2, 4, arch="resnet20", size=8, **hparams)
    meth.reconstruct(net, fp2, calib, seed=0, log=quiet)
    assert _block_error(net, fp, x) < 0.9 * _block_error(rtn, fp, x)


def test_units_are_blocks_plus_stem_and_classifier():
    net, _, _, _ = prepared("rtn", 4, 4, arch="resnet20", size=8)
    names = [name for name, _ in recon_units(net, "block")]
    assert names[0] == "conv1" and names[-1] == "fc" and BLOCK in names and len(names) == 2 + 9
    layers = recon_units(net, "layer")  # every quantized layer on its own
    quantized = [name for name, m in net.named_modules() if hasattr(m, "weight_quant")]
    assert [name for name, _ in layers] == quantized


@pytest.mark.parametrize("method", ["rtn", "adaround", "brecq", "qdrop", "ttaq"])
@pytest.mark.parametrize("bits", [2, 3])
def test_at_most_2_to_the_k_levels_after_reconstruction(method, bits):
    hparams = {} if method == "rtn" else {"iters": 6, **({"iters_act": 4} if method in ("brecq",) else {})}
    net, fp, meth, calib = prepared(method, bits, bits, size=16, **hparams)
    meth.reconstruct(net, fp, calib, seed=0, log=quiet)
    seen = []
    hooks = [q.register_forward_hook(lambda m, i, out: seen.append((m, out.detach())))
             for q in quantizers(net)]
    with torch.no_grad():
        net(calib)
    for h in hooks:
        h.remove()
    assert seen
    for module, out in seen:
        if isinstance(module, PtqWeightQuantizer):  # ≤ 2^k codes per tensor, ≤ 2^k values per channel
            weight = next(m.weight for m in net.modules() if getattr(m, "weight_quant", None) is module)
            assert torch.unique(module.codes(weight)).numel() <= 2**module.bits, f"{method} {module}"
            assert max(torch.unique(row).numel() for row in out) <= 2**module.bits, f"{method} {module}"
        else:
            assert torch.unique(out).numel() <= 2**module.bits, f"{method} {module}"


def test_ttaq_components_switch_independently():
    outputs = {}
    for name, switches in {"both": {}, "no_pem": {"pem_weight": 0.0}, "no_pcr": {"pcr_weight": 0.0}}.items():
        net, fp, meth, calib = prepared("ttaq", 2, 4, size=16, iters=20, **switches)
        stages = meth.stages()
        assert stages[0].pem_weight == meth.hparams["pem_weight"]
        assert stages[0].pcr_weight == meth.hparams["pcr_weight"]
        meth.reconstruct(net, fp, calib, seed=0, log=quiet)
        with torch.no_grad():
            outputs[name] = net(calib)
    assert not torch.equal(outputs["both"], outputs["no_pem"])
    assert not torch.equal(outputs["both"], outputs["no_pcr"])


def test_bad_option_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"invalid brecq.loss='kl'; valid: mse, fisher_diag"):
        prepared("brecq", 2, 4, loss="kl")
    with pytest.raises(ValueError, match=r"invalid ttaq.base='adaround'; valid: qdrop, brecq"):
        prepared("ttaq", 2, 4, base="adaround")
