"""Functions the distributed tests run in spawned ranks (importable by reference, as spawning requires)."""
from __future__ import annotations

import os
import signal
import types
from pathlib import Path
from typing import Any

from benchmarks.run.distributed_run import run_rank
from benchmarks.run.spec import RunSpec


def quiet(_: str) -> None:
    pass


def train_all(spec_dicts: list[dict[str, Any]], output: str | list[str]) -> None:
    """This rank's part of every run, one after the other, in one process group (into ``output``, or each
    into its own output)."""
    outputs = [output] * len(spec_dicts) if isinstance(output, str) else output
    for spec_dict, out in zip(spec_dicts, outputs, strict=True):
        run_rank(RunSpec.from_dict(spec_dict), Path(out), log=quiet)


def train_until_killed(spec_dict: dict[str, Any], output: str, epoch: int, position: int) -> None:
    """Train, and SIGKILL this process (rank 0) right after it wrote the step checkpoint of ``epoch``
    (0-based) at ``position``: a preemption without warning, with that checkpoint the last one on disk."""
    import benchmarks.run.trainer as trainer
    from benchmarks.run import distributed

    write = trainer.save_checkpoint

    def write_then_die(path, state, *args):
        write(path, state, *args)
        if distributed.is_writer() and (state["epoch"], state.get("position")) == (epoch, position):
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.save_checkpoint = write_then_die
    spec = RunSpec.from_dict(spec_dict)
    if spec.recipe.processes == 1:
        trainer.run(spec, Path(output), log=quiet)
    else:
        run_rank(spec, Path(output), log=quiet)


def spawn_until_killed(spec_dict: dict[str, Any], output: str, epoch: int, position: int) -> None:
    """``train_until_killed`` in this process (one process) or on the spec's processes, spawned here."""
    from benchmarks.run.distributed_run import spawn

    processes = spec_dict["recipe"].get("processes", 1)
    if processes == 1:
        train_until_killed(spec_dict, output, epoch, position)
    else:
        spawn(processes, train_until_killed, spec_dict, output, epoch, position)


def reduction_probes(method_names: list[str], output: str) -> None:
    """``reduction_probe`` of each method, into ``<output>/<method>``."""
    for name in method_names:
        os.makedirs(f"{output}/{name}", exist_ok=True)
        reduction_probe(name, f"{output}/{name}")


def reduction_probe(method_name: str, output: str, steps: int = 2) -> None:
    """Train a DANN step (a labelled source part, then an unlabelled target part) on data that differ by
    rank, through ``distributed.join`` and ``make_loss_fn`` as the trainer wires them; save, per rank, what
    the optimizer saw and what the ranks' own gradients were (``<output>/rank<r>.pt``)."""
    import copy

    import torch
    import torch.distributed as dist

    from benchmarks.models import build_model
    from benchmarks.run import distributed
    from benchmarks.run.spec import Recipe
    from benchmarks.run.trainer_parts import TaskModel, make_loss_fn, make_optimizer
    from methods import BatchContext, DomainBatch, calibrate, get_method, prepare
    from methods.base import LayerPolicy

    rank = distributed.init_process_group()
    torch.manual_seed(0)
    net = build_model("dann_digits", 10, in_channels=1, input_size=(28, 28), dropout=0.0)
    model = TaskModel(net, net.make_domain_head(2))
    method = get_method(method_name)
    context = BatchContext(class_prior=torch.full((10,), 0.1), class_counts=torch.full((10,), 10.0),
                           num_domains=2)
    prepare(model.net, method, 4, 4, LayerPolicy("8bit", "8bit"), context)
    calibrate(model.net, torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    local = copy.deepcopy(model)  # the same network outside the group: each rank's own gradient
    recipe = Recipe(epochs=1, batch_size=16, processes=2, sync_bn=False)  # per-rank BatchNorm: local = own
    optimizer = make_optimizer(model, recipe)
    parallel = distributed.join(model, optimizer, types.SimpleNamespace(), recipe, seed=0, resumed=False,
                                gradients_from_backward=method.gradients_from_backward)
    assert parallel is not None
    record: dict[str, Any] = {"wrapped": type(parallel.ddp.ddp).__name__ if parallel.ddp else None,
                              "pre_hooks": len(optimizer._optimizer_step_pre_hooks), "steps": []}
    seen: dict[str, Any] = {}
    optimizer.register_step_pre_hook(lambda opt, *_: seen.update(
        grads={n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    tally = {"correct": torch.zeros(()), "seen": 0, "grl": 0.5}
    loss_fn = make_loss_fn(model, method, context, torch.device("cpu"), "none", tally, parallel.ddp)
    local_loss_fn = make_loss_fn(local, method, context, torch.device("cpu"), "none", dict(tally))
    for step in range(steps):
        data = torch.Generator().manual_seed(100 * rank.rank + step)  # each rank its own, different data
        source = torch.randn(8, 1, 28, 28, generator=data), torch.randint(0, 10, (8,), generator=data)
        parts = [DomainBatch(*source, 0), DomainBatch(torch.randn(8, 1, 28, 28, generator=data), None, 1)]
        local.load_state_dict(model.state_dict())
        local.zero_grad(set_to_none=True)
        sum(local_loss_fn(part) for part in parts).backward()  # type: ignore[union-attr]
        own = {n: p.grad.clone() for n, p in local.named_parameters() if p.grad is not None}
        parallel.start_step()
        method.training_step(model, optimizer, parts, loss_fn)
        record["steps"].append({"optimizer_saw": seen["grads"], "own": own})
    record["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.save(record, f"{output}/rank{rank.rank}.pt")
    dist.barrier()
