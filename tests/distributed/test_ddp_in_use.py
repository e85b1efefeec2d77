"""Data-parallel runs train through PyTorch's DistributedDataParallel (docs/distributed.md, "Gradients").

Two gloo ranks are fed deliberately different data for two DANN steps (a labelled source part, then an
unlabelled target part, which does not use the classifier: DDP's unused-parameter search must still see the
source part). For a method whose gradient comes from ``backward()`` (LSQ) the training forward is a
``DistributedDataParallel`` and no optimizer hook averages anything, yet the gradient the optimizer steps with
is, on both ranks, the mean of the two ranks' own gradients, and the ranks end with identical parameters: only
DDP's reducer can have done that. EmaQ, whose gradients come from ``torch.autograd.grad``, keeps the optimizer
step pre-hook instead, and its ranks end identical too.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.run.distributed_run import spawn
from tests.distributed.workers import reduction_probes

pytestmark = pytest.mark.slow
METHODS = ("lsq", "emaq")


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    output = tmp_path_factory.mktemp("probe")
    # one spawn for both: starting the processes is most of the time
    spawn(2, reduction_probes, list(METHODS), str(output))
    return output


def _probe(method: str, output) -> list[dict]:
    return [torch.load(output / method / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_a_backward_method_is_reduced_by_ddp_alone(probed):
    ranks = _probe("lsq", probed)
    for record in ranks:
        assert record["wrapped"] == "DistributedDataParallel"
        assert record["pre_hooks"] == 0  # nothing but DDP averages the gradients
    for step in range(len(ranks[0]["steps"])):
        own = [record["steps"][step]["own"] for record in ranks]
        assert any(not torch.allclose(own[0][n], own[1][n]) for n in own[0])  # the data really differ
        assert "net.classifier.3.weight" in own[0]  # the classifier, used by the source part only
        for record in ranks:
            saw = record["steps"][step]["optimizer_saw"]
            assert saw.keys() == own[0].keys()
            for name, grad in saw.items():
                mean = (own[0][name] + own[1][name]) / 2
                assert torch.allclose(grad, mean, rtol=1e-5, atol=1e-7), (step, name)
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name


def test_a_method_with_its_own_gradients_keeps_the_optimizer_hook(probed):
    ranks = _probe("emaq", probed)
    for record in ranks:
        assert record["wrapped"] is None and record["pre_hooks"] == 1
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name
