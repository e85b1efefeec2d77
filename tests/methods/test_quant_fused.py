"""The fused quantizer kernels (issue #8 speed work) are bit-identical to the composites they replace.

Forward values and the gradients of every input are compared bit for bit (``view(int32)``, so even the sign of
a zero counts) against the reference composites of autograd ops, on fresh random inputs, in both memory
formats, for float32 and bfloat16 activations, in training (graph) and evaluation (no graph) mode.
"""

from __future__ import annotations

import pytest
import torch

from methods.dorefa import dorefa_activation, dorefa_activation_reference, dorefa_weight
from methods.lsq import lsq_quantize, lsq_quantize_reference
from methods.quant import (
    batch_standardize,
    batch_standardize_native,
    batch_standardize_reference,
    cdf_grid,
    cdf_grid_reference,
    clamp_quantize_unit,
    normal_cdf,
    normal_cdf_reference,
    quantize_unit,
    quantize_unit_reference,
)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bits and equal strides (a convolution picks its kernel by its weight's strides)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = torch.int16 if a.element_size() == 2 else torch.int32
    return a.stride() == b.stride() and torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def _input(seed: int, channels_last: bool, dtype: torch.dtype, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 6, 5, 5, generator=g) * 3
    if kind == "relu":
        x = x.relu()
    x[0, 0, 0, :3] = torch.tensor([-0.0, 0.0, float("nan")])  # signed zeros and a NaN
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _run(fn, x: torch.Tensor, g: torch.Tensor, step: torch.Tensor | None = None):
    v = x.clone().requires_grad_()
    args = (v,) if step is None else (v, step.clone().requires_grad_())
    out = fn(*args)
    out.backward(g)
    grads = [a.grad for a in args]
    with torch.no_grad():
        evaluated = fn(*[a.detach() for a in args])
    return out.detach(), grads, evaluated


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lsq_quantize_bit_identical(channels_last, dtype, signed, seed):
    x = _input(seed, channels_last, dtype, "signed" if signed else "relu")
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 100)).to(dtype)
    q_n, q_p = (8, 7) if signed else (0, 15)
    step = torch.tensor(0.37 + 0.1 * seed)

    def fused(v, s):
        return lsq_quantize(v, s, q_n, q_p, 0.013)

    def reference(v, s):
        return lsq_quantize_reference(v, s, q_n, q_p, 0.013)

    out_f, grads_f, eval_f = _run(fused, x, g, step)
    out_r, grads_r, eval_r = _run(reference, x, g, step)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r) and same_bits(eval_f, out_r)
    assert all(same_bits(a, b) for a, b in zip(grads_f, grads_r))
    assert out_f.stride() == out_r.stride() and eval_f.stride() == eval_r.stride()
    assert grads_f[0].is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("step_shape", [(), (8, 1, 1, 1), (1, 6, 1, 1), (8, 6, 5, 5), (6, 1, 1)],
                         ids=["tensor", "out_channel", "channel", "element", "channel_3d"])
def test_lsq_quantize_bit_identical_for_every_step_shape(channels_last, dtype, step_shape):
    """A step per tensor, per channel (a conv weight's (C_out, 1, 1, 1), activations' (1, C, 1, 1)) or per
    element: the step's gradient (the sum over the broadcast dims, or none) and the input's, bit for bit."""
    x = _input(3, channels_last, dtype, "signed")
    x[0, 0, 0, 2] = 1.3  # no NaN: every step entry gets a finite gradient
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(11)).to(dtype)
    step = torch.rand(step_shape, generator=torch.Generator().manual_seed(12)) * 0.5 + 0.2

    def fused(v, s):
        return lsq_quantize(v, s, 8, 7, 0.013)

    def reference(v, s):
        return lsq_quantize_reference(v, s, 8, 7, 0.013)

    out_f, grads_f, eval_f = _run(fused, x, g, step)
    out_r, grads_r, eval_r = _run(reference, x, g, step)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r)
    assert all(same_bits(a, b) for a, b in zip(grads_f, grads_r))
    assert grads_f[1].shape == step.shape and (grads_f[1] != 0).any()


@pytest.mark.parametrize("v_shape, step_shape", [
    ((), ()), ((1,), (1,)), ((1,), ()), ((16, 8), (16, 1)), ((4, 3, 5, 5), (1, 1, 1, 1)),
    ((4, 3, 5, 5), (2, 4, 3, 5, 5)),
])
def test_lsq_quantize_bit_identical_for_edge_step_shapes(v_shape, step_shape):
    """One-element tensors (nothing to reduce), a Linear weight per row, a step broadcasting v up."""
    g = torch.Generator().manual_seed(13)
    x, step = torch.randn(v_shape, generator=g) * 3, torch.rand(step_shape, generator=g) + 0.3
    upstream = torch.randn(torch.broadcast_shapes(v_shape, step_shape), generator=g)
    out_f, grads_f, eval_f = _run(lambda v, s: lsq_quantize(v, s, 8, 7, 0.1), x, upstream, step)
    out_r, grads_r, eval_r = _run(lambda v, s: lsq_quantize_reference(v, s, 8, 7, 0.1), x, upstream, step)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r)
    assert all(same_bits(a, b) for a, b in zip(grads_f, grads_r))
    assert (grads_f[1] != 0).any()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_dorefa_activation_bit_identical(channels_last, dtype, bits, signed):
    x = _input(bits, channels_last, dtype, "signed")
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).to(dtype)
    out_f, grads_f, eval_f = _run(lambda v: dorefa_activation(v, bits, signed), x, g)
    out_r, grads_r, eval_r = _run(lambda v: dorefa_activation_reference(v, bits, signed), x, g)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r)
    assert same_bits(grads_f[0], grads_r[0])


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantize_unit_and_clamp_variant_bit_identical(bits):
    u = torch.rand(4, 3, 7, 7, generator=torch.Generator().manual_seed(bits)) * 1.4 - 0.2
    u[0, 0, 0, :2] = torch.tensor([-0.0, 0.0])
    g = torch.randn(u.shape, generator=torch.Generator().manual_seed(3))
    out_f, grads_f, eval_f = _run(lambda v: quantize_unit(v, bits), u, g)
    out_r, grads_r, _ = _run(lambda v: quantize_unit_reference(v, bits), u, g)
    assert same_bits(out_f, out_r) and same_bits(eval_f, out_r) and same_bits(grads_f[0], grads_r[0])

    out_f, grads_f, eval_f = _run(lambda v: clamp_quantize_unit(v, 0.0, 1.0, bits), u, g)
    out_r, grads_r, _ = _run(lambda v: quantize_unit_reference(torch.clamp(v, 0.0, 1.0), bits), u, g)
    assert same_bits(out_f, out_r) and same_bits(eval_f, out_r) and same_bits(grads_f[0], grads_r[0])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1])
def test_normal_cdf_bit_identical(channels_last, dtype, seed):
    x = _input(seed, channels_last, dtype, "signed")
    x[1, 0, 0, :2] = torch.tensor([40.0, -40.0])  # Φ saturates; φ underflows to 0
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 50)).to(dtype)
    out_f, grads_f, eval_f = _run(normal_cdf, x, g)
    out_r, grads_r, eval_r = _run(normal_cdf_reference, x, g)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r) and same_bits(grads_f[0], grads_r[0])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_cdf_grid_bit_identical(channels_last, dtype, bits, alpha):
    u = normal_cdf_reference(_input(bits, channels_last, dtype, "signed"))
    g = torch.randn(u.shape, generator=torch.Generator().manual_seed(9)).to(dtype)
    out_f, grads_f, eval_f = _run(lambda v: cdf_grid(v, bits, alpha), u, g)
    out_r, grads_r, eval_r = _run(lambda v: cdf_grid_reference(v, bits, alpha), u, g)
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r) and same_bits(grads_f[0], grads_r[0])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("grad_channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(8, 6, 5, 5), (32, 16, 12, 12), (6, 4)])
def test_batch_standardize_bit_identical(channels_last, grad_channels_last, dtype, shape):
    g = torch.Generator().manual_seed(sum(shape))
    x, gy = (torch.randn(*shape, generator=g) * 2 + 0.7).to(dtype), torch.randn(*shape, generator=g).to(dtype)
    if len(shape) == 4:
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        gy = gy.contiguous(memory_format=torch.channels_last) if grad_channels_last else gy
    results = []
    for fn in (batch_standardize, batch_standardize_reference):
        v = x.clone(memory_format=torch.preserve_format).requires_grad_()
        y, mean, var = fn(v, 1e-5)
        y.backward(gy)
        with torch.no_grad():
            evaluated = fn(v.detach(), 1e-5)[0]
        results.append((y.detach(), mean.detach(), var.detach(), v.grad, evaluated))
    assert all(same_bits(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(32, 16, 12, 12), (6, 4)])
def test_batch_standardize_native_is_close_but_opt_in(channels_last, shape):
    """EmaQ's ``stat_kernel="native_bn"``: BatchNorm's fused kernel agrees with the exact composite to float
    rounding (values, gradient, μ, σ²), and is not bit-identical on a realistic tensor — why it is opt-in."""
    g = torch.Generator().manual_seed(3)
    x, gy = torch.randn(*shape, generator=g) * 2 + 0.7, torch.randn(*shape, generator=g)
    if channels_last and len(shape) == 4:
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    results = []
    for fn in (batch_standardize_native, batch_standardize_reference):
        v = x.clone(memory_format=torch.preserve_format).requires_grad_()
        y, mean, var = fn(v, 1e-5)
        assert fn is batch_standardize_reference or not (mean.requires_grad or var.requires_grad)
        y.backward(gy)
        results.append((y.detach(), mean.detach(), var.detach(), v.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if len(shape) == 4:
        assert not all(same_bits(a, b) for a, b in zip(*results))


def test_normal_cdf_keeps_the_composites_strides_on_a_one_channel_conv_weight():
    """erf normalises the ambiguous stride of a size-1 dim; x·c and in-place ops keep it."""
    w = torch.randn(32 * 25, generator=torch.Generator().manual_seed(4))
    w = w.as_strided((32, 1, 5, 5), (25, 1, 5, 1))  # a 1-channel conv weight in channels_last
    g = torch.randn(32, 1, 5, 5, generator=torch.Generator().manual_seed(5))
    out_f, grads_f, eval_f = _run(normal_cdf, w, g)
    out_r, grads_r, eval_r = _run(normal_cdf_reference, w, g)
    assert out_r.stride() != w.stride()  # the case this test is about
    assert same_bits(out_f, out_r) and same_bits(eval_f, eval_r) and same_bits(grads_f[0], grads_r[0])


def test_dorefa_weight_gradient_unchanged_through_fused_unit():
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(5))
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(6))
    for rescale in (False, True):
        a = w.clone().requires_grad_()
        dorefa_weight(a, 4, rescale).backward(g)
        b = w.clone().requires_grad_()
        t = torch.tanh(b)
        m = t.abs().max()
        m = m.detach() if rescale else m
        q = 2.0 * quantize_unit_reference(t / (2.0 * m) + 0.5, 4) - 1.0
        (q * m if rescale else q).backward(g)
        assert same_bits(a.grad, b.grad)


@pytest.mark.parametrize("method", ["lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt"])
@pytest.mark.parametrize("arch", ["resnet20", "dann_digits"])  # dann_digits: a 1-channel first conv
def test_training_steps_bit_identical_to_reference_composites(method, arch, monkeypatch):
    """A few SGD steps of a quantized ResNet-20 (channels_last, as the trainer runs it) end with the same
    weights, bit for bit, whether the quantizers use the fused kernels or the reference composites."""
    import methods.cdf
    import methods.dorefa
    import methods.emaq_core
    import methods.lsq
    import methods.quant
    from benchmarks.models import build_model
    from benchmarks.run.spec import Recipe
    from benchmarks.run.trainer_parts import TaskModel, make_optimizer
    from methods import BatchContext, DomainBatch, calibrate, get_method, prepare

    def train() -> list[torch.Tensor]:
        torch.manual_seed(0)
        channels, size = (3, 8) if arch == "resnet20" else (1, 28)
        model = TaskModel(build_model(arch, 10, in_channels=channels, input_size=(size, size)))
        model = model.to(memory_format=torch.channels_last)
        context = BatchContext(class_prior=torch.full((10,), 0.1), class_counts=torch.full((10,), 50.0))
        m = get_method(method)
        prepare(model.net, m, 4, 4, None, context)
        g = torch.Generator().manual_seed(1)
        xs = [
            torch.randn(8, channels, size, size, generator=g).contiguous(memory_format=torch.channels_last)
            for _ in range(3)
        ]
        ys = [torch.randint(0, 10, (8,), generator=g) for _ in range(3)]
        calibrate(model.net, xs[0])
        optimizer = make_optimizer(model, Recipe(epochs=1, lr=0.05))

        def loss_fn(part: DomainBatch) -> torch.Tensor:
            context.set_batch(part.y, part.domain)
            features = model.net.features(part.x)
            loss = m.task_loss(model.net.classify(features), part.y, features, context)
            extra = m.extra_loss(model.net)
            return loss + extra if extra is not None else loss

        model.train()
        for x, y in zip(xs, ys):
            m.training_step(model, optimizer, [DomainBatch(x, y, 0)], loss_fn)
        model.eval()
        with torch.no_grad():
            logits = model.net(xs[0])
        return [t.detach().clone() for t in model.state_dict().values()] + [logits]

    fused = train()
    monkeypatch.setattr(methods.lsq, "lsq_quantize", methods.lsq.lsq_quantize_reference)
    monkeypatch.setattr(methods.dorefa, "dorefa_activation", methods.dorefa.dorefa_activation_reference)
    monkeypatch.setattr(methods.dorefa, "quantize_unit", quantize_unit_reference)
    monkeypatch.setattr(methods.quant, "quantize_unit", quantize_unit_reference)
    monkeypatch.setattr(methods.cdf, "normal_cdf", normal_cdf_reference)
    monkeypatch.setattr(methods.cdf, "cdf_grid", cdf_grid_reference)
    monkeypatch.setattr(methods.emaq_core, "batch_standardize", batch_standardize_reference)
    reference = train()
    assert len(fused) == len(reference)
    for a, b in zip(fused, reference):
        assert a.dtype != torch.float32 or same_bits(a, b)
        assert torch.equal(a, b)
