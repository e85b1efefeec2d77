"""Every method's quantizers and forward hooks trace under torch.compile in one graph, without recompiles.

``fullgraph=True`` turns any graph break into an error; a counting backend (AOT autograd, eager kernels: the
backward is traced too, but nothing is code-generated, so the test takes seconds) counts the graphs. A short
"run" of two epochs — training steps (forward, backward, optimizer step, ``post_step``), then evaluation in
inference mode — must compile exactly one training graph and one evaluation graph.
"""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from benchmarks.models import build_model
from benchmarks.run.compile_step import compile_features, plan_compile
from methods import BatchContext, calibrate, get_method, prepare

METHODS = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt")
FIRST_OBSERVATION_BRANCH = ("emaq", "emaq-lt")
BATCH, CLASSES = 8, 4


def prepared(name: str):
    """dann_digits (the smallest architecture: two convolutions, three linear layers) at W4/A4, calibrated."""
    torch.manual_seed(0)
    net = build_model("dann_digits", CLASSES, in_channels=3, input_size=(28, 28))
    method = get_method(name)
    context = BatchContext(class_prior=torch.full((CLASSES,), 1.0 / CLASSES), num_domains=1)
    context.class_counts = torch.full((CLASSES,), 100.0)
    bits = 4 if method.quantizes else 32
    prepare(net, method, bits, bits, None, context)
    x = torch.randn(BATCH, 3, 28, 28)
    y = torch.arange(BATCH) % CLASSES
    calibrate(net, x)
    return net, method, context, x, y


# About 5-15 s each on a shared 2-core CPU: LSQ stays in the fast suite, the others are slow-marked.
@pytest.mark.parametrize(
    "name", [m if m == "lsq" else pytest.param(m, marks=pytest.mark.slow) for m in METHODS]
)
def test_training_and_evaluation_compile_to_one_graph_each(name: str) -> None:
    torch._dynamo.reset()
    net, method, context, x, y = prepared(name)
    for module in net.modules():  # what compile_features does before compiling
        if callable(getattr(module, "reserve", None)):
            module.reserve(BATCH)
    counter = CompileCounterWithBackend("aot_eager")

    def forward(x: torch.Tensor):  # what a compiled run compiles: every quantizer, and ADMM's extra loss
        features = net.features(x)
        return features, net.classify(features), method.extra_loss(net)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return method.predict(net(x), context)

    train = torch.compile(forward, backend=counter, fullgraph=True)
    evaluate = torch.compile(predict, backend=counter, fullgraph=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    frames = []
    for _epoch in range(2):
        net.train()
        for _ in range(2):
            context.set_batch(y, 0)
            optimizer.zero_grad()
            features, logits, extra = train(x)
            loss = method.task_loss(logits, y, features, context)  # eager in a compiled run too
            loss = loss + extra if extra is not None else loss
            loss.backward()
            optimizer.step()
            method.post_step(net)
        net.eval()
        context.set_batch(None, 0)
        with torch.inference_mode():
            logits = evaluate(x)
        assert torch.isfinite(logits).all()
        frames.append(counter.frame_count)
    # One training and one evaluation graph; EmaQ's first statistics of a domain set the EMA instead of
    # updating it, a branch on a host-side flag, traced once more on the domain's second step.
    expected = 3 if name in FIRST_OBSERVATION_BRANCH else 2
    assert frames == [expected, expected], f"{name}: graphs compiled after each epoch: {frames}"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_cuda_graphs_are_planned_only_where_a_replay_is_safe() -> None:
    net, *_ = prepared("alignq")  # ADMM observers on by default
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert plan_compile(net, cpu).mode == "default"
    assert "CUDA device" in plan_compile(net, cpu).blockers[0]
    assert any("ADMM" in reason for reason in plan_compile(net, cuda).blockers)
    plain, *_ = prepared("lsq")
    assert plan_compile(plain, cuda).cuda_graphs
    assert not plan_compile(plain, cuda, parts_per_step=2).cuda_graphs
    assert not plan_compile(plain, cuda, cuda_graphs=False).cuda_graphs


def test_compile_features_replaces_the_network_functions_only() -> None:
    net, *_ = prepared("lsq")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    line = compile_features(net, plan_compile(net, torch.device("cpu")), BATCH)
    assert "no CUDA graphs" in line
    assert "features" in net.__dict__ and "classify" in net.__dict__  # compiled lazily: nothing ran yet
    assert net.state_dict().keys() == before.keys()
