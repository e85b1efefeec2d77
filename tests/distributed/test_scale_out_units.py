"""Fast checks of the scale-out pieces: the recipe keys and the run id, bad values, a data-parallel spec
outside a process group, and the synchronised BatchNorm's arithmetic (in a one-process gloo group, where it
must equal BatchNorm)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from torch import nn

from benchmarks.run.distributed import synced_batch_norm
from benchmarks.run.distributed_run import _free_port
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run

BASE = RunSpec(task=TaskSpec("optdigits"), arch="dann_digits", method="fp",
               recipe=Recipe(epochs=1, batch_size=32, steps_per_epoch=2))


def _with(**recipe_changes) -> RunSpec:
    return dataclasses.replace(BASE, recipe=dataclasses.replace(BASE.recipe, **recipe_changes))


def test_only_keys_that_change_results_change_the_run_id():
    assert "processes" not in BASE.to_dict()["recipe"]  # defaults are not written: old ids stand
    assert _with(processes=2).run_id != BASE.run_id
    assert _with(sync_bn=False).run_id != BASE.run_id
    same = _with(checkpoint_every_steps=5, checkpoint_every_minutes=2.5)
    assert same.run_id == BASE.run_id and same.to_dict()["recipe"]["checkpoint_every_steps"] == 5
    assert _with(processes=4, nodes=2).run_id == _with(processes=4).run_id
    assert RunSpec.from_dict(same.to_dict()) == same


@pytest.mark.parametrize(("changes", "message"), [
    ({"processes": 0}, "invalid processes 0; expected an integer >= 1"),
    ({"processes": 3}, "invalid batch_size 32; expected a multiple of processes=3"),
    ({"processes": 4, "nodes": 3}, "invalid nodes 3; expected a divisor of processes=4"),
    ({"checkpoint_every_minutes": 0}, "invalid checkpoint_every_minutes 0; expected a number > 0"),
    ({"sync_bn": "yes"}, "invalid sync_bn 'yes'; expected true or false"),
])
def test_bad_scale_out_values_are_named(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _with(**changes)


def test_a_data_parallel_spec_outside_a_process_group_is_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid world size 1 for a recipe with processes=2"):
        run(_with(processes=2), tmp_path, log=lambda _: None)


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("shape", [(6, 4, 5, 5), (7, 4)])
def test_synced_batchnorm_equals_batchnorm_on_one_process(one_process_group, shape):
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(4) if len(shape) == 4 else nn.BatchNorm1d(4)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    synced = type(reference)(4)
    synced.load_state_dict(reference.state_dict())
    x = (torch.randn(shape) * 3 + 2).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    upstream = torch.randn(shape)
    expected = reference(x)
    (expected * upstream).sum().backward()
    out = synced_batch_norm(synced, x2)
    (out * upstream).sum().backward()
    for a, b in ((expected, out), (x.grad, x2.grad), (reference.weight.grad, synced.weight.grad),
                 (reference.bias.grad, synced.bias.grad), (reference.running_mean, synced.running_mean),
                 (reference.running_var, synced.running_var)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(synced.num_batches_tracked) == 1
