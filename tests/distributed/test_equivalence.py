"""Two processes with batch B/2 each train like one process with batch B (docs/distributed.md).

For the methods whose batch statistics are all reduced across ranks (BatchNorm synchronised; FP, LSQ, DoReFa
and QT-DoG keep no other batch statistics) the final weights after three steps equal the one-process run's
within ``ATOL`` of the method, absolute, on every tensor (float sums in another order; LSQ's learned step
sizes turn a last-bit difference into a flipped rounding now and then, so its tolerance is wider; the
measured worst differences are in docs/distributed.md). The methods with per-rank statistics (AlignQ,
ClimbQ, EmaQ, EmaQ-LT: their docs pages say which) train to completion under two processes with the same
run-directory layout, and their parameters stay within ``PER_RANK_PARAMETER_ATOL`` of the one-process run's
after three steps (a loose bound: their statistics are each rank's own). Run with ``-s``, the tests print
the worst differences docs/distributed.md tabulates. FP, LSQ, DoReFa, QT-DoG, AlignQ and ClimbQ reduce their
gradients through DistributedDataParallel, EmaQ and EmaQ-LT at the optimizer step.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.data.tasks import build_task
from benchmarks.run.distributed_run import spawn
from benchmarks.run.run_model import load_finished_model
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run
from tests.distributed.workers import quiet, train_all

pytestmark = pytest.mark.slow

FP = Recipe(epochs=1, batch_size=64, lr=0.05, schedule="cosine", steps_per_epoch=3)
QAT = Recipe(epochs=1, batch_size=64, lr=0.01, schedule="cosine", steps_per_epoch=3)
REDUCED = ("fp", "lsq", "dorefa", "qtdog")
PER_RANK = ("alignq", "climbq", "emaq", "emaq-lt")
ATOL = {"fp": 5e-4, "dorefa": 5e-4, "lsq": 1e-2, "qtdog": 5e-4}
# QT-DoG switched on after the first step, weights and step sizes then frozen as in the authors' code: the set
# of parameters with a gradient changes during the run, which DDP must follow (find_unused_parameters)
HPARAMS = {"qtdog": {"onset_step": 1, "rebuild_optimizer": False}}
PER_RANK_PARAMETER_ATOL = 1e-2


def _spec(method: str, processes: int) -> RunSpec:
    recipe = dataclasses.replace(FP if method == "fp" else QAT, processes=processes)
    bits = 32 if method == "fp" else 4
    a_bits = 32 if method == "qtdog" else bits  # QT-DoG quantizes weights only
    # dropout off: each rank draws its own masks, so dropout alone would make the runs differ
    return RunSpec(task=TaskSpec("optdigits", test_subsample=200), arch="dann_digits", method=method,
                   hparams=HPARAMS.get(method, {}), recipe=recipe, w_bits=bits, a_bits=a_bits,
                   fp_recipe=None if method == "fp" else FP, arch_options={"dropout": 0.0})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp")
    methods = REDUCED + PER_RANK
    for method in methods:  # fp first: it is every QAT run's parent
        run(_spec(method, 1), output, log=quiet)
    spawn(2, train_all, [_spec(method, 2).to_dict() for method in methods], str(output))
    return output


def _weights(output, spec: RunSpec) -> dict[str, torch.Tensor]:
    return torch.load(RunDir.of(output, spec.run_id).final_path, map_location="cpu", weights_only=True)


def _worst(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor], keys) -> tuple[float, str]:
    """The largest absolute difference over ``keys`` (floating tensors of one shape), and where."""
    gaps = {k: (one[k].double() - two[k].double()).abs().max().item() for k in keys
            if one[k].is_floating_point() and one[k].numel() and one[k].shape == two[k].shape}
    where = max(gaps, key=lambda k: gaps[k])
    return gaps[where], where


def _parameter_names(output, method: str) -> set[str]:
    spec = _spec(method, 1)
    task = build_task(spec.task.dataset, spec.task.target, seed=spec.seed,
                      val_fraction=spec.task.val_fraction)
    model, _, _ = load_finished_model(output, spec, task, torch.device("cpu"))
    return {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize("method", REDUCED)
def test_two_processes_reach_the_weights_of_one_with_the_global_batch(trained, method):
    one, two = _weights(trained, _spec(method, 1)), _weights(trained, _spec(method, 2))
    assert one.keys() == two.keys()
    print(f"\n{method}: worst |Δ| over all tensors %.3g (%s); over parameters %.3g (%s)"
          % (*_worst(one, two, one), *_worst(one, two, _parameter_names(trained, method))))
    for key in one:
        assert torch.allclose(one[key].double(), two[key].double(), rtol=0, atol=ATOL[method]), key
    if method != "fp":  # the tolerance is far below what the steps moved the weights
        start = _weights(trained, _spec(method, 1).parent())
        moved = max((one[k].double() - start[k].double()).abs().max().item() for k in start
                    if start[k].is_floating_point())
        assert moved > 10 * ATOL[method]


@pytest.mark.parametrize("method", PER_RANK)
def test_per_rank_methods_stay_near_the_one_process_parameters(trained, method):
    one, two = _weights(trained, _spec(method, 1)), _weights(trained, _spec(method, 2))
    worst, where = _worst(one, two, _parameter_names(trained, method))
    print(f"\n{method}: worst |Δ| over parameters {worst:.3g} ({where})")
    assert worst < PER_RANK_PARAMETER_ATOL, (where, worst)


@pytest.mark.parametrize("method", REDUCED + PER_RANK)
def test_a_distributed_run_directory_has_the_layout_of_a_normal_one(trained, method):
    one, two = RunDir.of(trained, _spec(method, 1).run_id), RunDir.of(trained, _spec(method, 2).run_id)
    assert two.is_done() and two.result_problem() is None
    assert sorted(p.name for p in one.path.iterdir()) == sorted(p.name for p in two.path.iterdir())
    assert len(two.read_metrics()) == len(one.read_metrics()) == 1
    assert two.read_result().spec["recipe"]["processes"] == 2
