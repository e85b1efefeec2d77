"""Small builders shared by tests: a prepared model for any method, and a training step like the trainer's."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.models import build_model
from benchmarks.run.spec import Recipe
from benchmarks.run.trainer_parts import TaskModel, make_optimizer
from methods import BatchContext, DomainBatch, calibrate, get_method, prepare


def prepared_digits_model(method_name: str, w_bits: int, a_bits: int, *, num_domains: int = 1, seed: int = 0,
                          batch: int = 16):
    """A DANN digits net quantized for ``method_name``, calibrated on a random batch; returns
    (model, method, context, x, y)."""
    torch.manual_seed(seed)
    net = build_model("dann_digits", 10, in_channels=3, input_size=(28, 28))
    model = TaskModel(net, net.make_domain_head(num_domains) if num_domains > 1 else None)
    counts = torch.tensor([40.0, 30, 20, 15, 10, 8, 6, 4, 3, 2])
    context = BatchContext(class_prior=counts / counts.sum(), class_counts=counts, num_domains=num_domains)
    method = get_method(method_name)
    prepare(model.net, method, w_bits, a_bits, None, context)
    x = torch.randn(batch, 3, 28, 28)
    y = torch.arange(batch) % 10
    calibrate(model.net, x)
    return model, method, context, x, y


def training_step(model, method, context, parts, lr: float = 0.01) -> torch.Tensor:
    """One optimisation step through ``method.training_step`` with a loss like the trainer's."""
    optimizer = make_optimizer(model, Recipe(epochs=1, lr=lr))

    def loss_fn(part: DomainBatch) -> torch.Tensor:
        context.set_batch(part.y, part.domain)
        features = model.net.features(part.x)
        loss = features.new_zeros(())
        if part.y is not None:
            loss = loss + method.task_loss(model.net.classify(features), part.y, features, context)
        if model.domain_head is not None:
            logits = model.domain_head(features)
            loss = loss + F.cross_entropy(logits, torch.full((len(part.x),), part.domain, dtype=torch.long))
        extra = method.extra_loss(model.net)
        return loss + extra if extra is not None else loss

    return method.training_step(model, optimizer, parts, loss_fn)
