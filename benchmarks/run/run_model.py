"""The network of a run, built the same way wherever one is needed.

The trainer builds it to train; post-training quantization, test-time adaptation and ensembles rebuild a
*finished* run's network from its spec and ``final.pt`` (``load_finished_model``). Both go through
``build_run_model`` so a model is never assembled two different ways.
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.data.base import TaskData
from benchmarks.models import build_model
from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import RunSpec
from benchmarks.run.trainer_parts import TaskModel
from benchmarks.run.validate import layer_policy_of
from methods import BatchContext, QuantMethod, get_method, prepare


def build_run_model(spec: RunSpec, task: TaskData, device: torch.device,
                    channels_last: bool = False) -> tuple[TaskModel, QuantMethod, BatchContext]:
    """The unprepared (full-precision) network of ``spec`` seeded by the run seed, its method and the batch
    context; the caller loads parent weights, then ``prepare``s the network for the method."""
    method = get_method(spec.method, **spec.hparams)
    torch.manual_seed(spec.seed)
    use_targets = spec.task.protocol == "dann"
    net = build_model(spec.arch, task.num_classes, in_channels=task.channels, input_size=task.size,
                      **spec.arch_options)
    head = net.make_domain_head(len(task.sources) + len(task.targets)) if use_targets else None
    model = TaskModel(net, head).to(device)
    if channels_last:
        # torch's stubs lack Module.to(memory_format=...), which exists at run time
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    counts = torch.tensor(task.train_class_counts, dtype=torch.float32)
    context = BatchContext(class_prior=(counts / counts.sum()).to(device), class_counts=counts.to(device),
                           num_domains=len(task.sources) + (len(task.targets) if use_targets else 0))
    return model, method, context


def load_weights(model: torch.nn.Module, path: Path, device: torch.device) -> None:
    """Load a state dict saved by the trainer (tensors only: ``weights_only``, never code)."""
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))


def load_finished_model(output: Path, spec: RunSpec, task: TaskData,
                        device: torch.device) -> tuple[TaskModel, QuantMethod, BatchContext]:
    """A finished run's network, prepared for its method with its final weights, in eval mode."""
    directory = RunDir.of(output, spec.run_id)
    if not directory.is_done():
        raise FileNotFoundError(f"run {spec.run_id} is not done (expected {directory.final_path})")
    model, method, context = build_run_model(spec, task, device)
    prepare(model.net, method, spec.w_bits, spec.a_bits, layer_policy_of(spec), context)
    model.to(device)
    load_weights(model, directory.final_path, device)
    return model.eval(), method, context
