"""The shared CDF quantizer (C1–C4) and the invariants every CDF method keeps: level counts, the 32-bit
identity, checkpoint round trips and a few training steps on tiny two-domain and long-tailed tasks.

The helpers here (tiny net, tasks, a trainer-like loss) are shared with test_method_{alignq,climbq,emaq}.py.
"""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from methods import BatchContext, DomainBatch, Quantizer, calibrate, get_method, prepare
from methods.cdf import ALPHA_A, ALPHA_W, CdfActQuantizer, CdfWeightQuantizer, weight_cdf
from methods.emaq_core import DomainCdfActQuantizer
from methods.quant import normal_cdf, normal_pdf

CDF_METHODS = ["alignq", "climbq", "emaq", "emaq-lt"]
NUM_CLASSES = 4
LT_COUNTS = [24, 12, 6, 2]
KS_P_MIN = 0.01  # KS test threshold: p > 0.01 (fixed seeds)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation, which stalls on a busy 2-core
    machine (about 5x slower there). Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """conv-BN-ReLU ×2 → GAP → linear: features(x) -> (B, 8), classify(f) -> logits."""

    def __init__(self, classes: int = NUM_CLASSES, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class TaskModel(nn.Module):
    """The trainer's container: the quantized net plus an optional FP domain head (DANN)."""

    def __init__(self, net: nn.Module, domain_head: nn.Module | None = None) -> None:
        super().__init__()
        self.net, self.domain_head = net, domain_head


def make_batch(labels: list[int], shift: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-dependent patterns plus noise (learnable); ``shift`` moves a whole domain."""
    patterns = torch.randn(NUM_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.tensor(labels)
    noise = torch.randn(len(labels), 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return (patterns[y] + 0.5 * noise) * (1.0 + shift) + shift, y


def two_domain_parts() -> list[DomainBatch]:
    """Source (domain 0, labelled) and a shifted, unlabelled target (domain 1)."""
    xs, ys = make_batch([i % NUM_CLASSES for i in range(16)], seed=1)
    xt, _ = make_batch([(3 * i) % NUM_CLASSES for i in range(16)], shift=1.0, seed=2)
    return [DomainBatch(xs, ys, 0), DomainBatch(xt, None, 1)]


def long_tailed_parts() -> list[DomainBatch]:
    x, y = make_batch([c for c, n in enumerate(LT_COUNTS) for _ in range(n // 2)], seed=3)
    return [DomainBatch(x, y, 0)]


def make_context(num_domains: int = 1, counts: list[int] = LT_COUNTS) -> BatchContext:
    c = torch.tensor(counts, dtype=torch.float32)
    context = BatchContext(class_prior=c / c.sum(), num_domains=num_domains)
    context.class_counts = c
    return context


def build(name: str, w: int = 4, a: int = 4, num_domains: int = 1, dann: bool = False, seed: int = 0,
          calib: torch.Tensor | None = None, **hparams) -> tuple[TaskModel, object, BatchContext]:
    """prepare + calibrate exactly as the trainer does."""
    torch.manual_seed(seed)
    net = TinyNet()
    head = nn.Linear(8, num_domains) if dann else None
    method = get_method(name, **hparams)
    context = make_context(num_domains)
    prepare(net, method, w, a, None, context)
    calibrate(net, calib if calib is not None else make_batch(list(range(NUM_CLASSES)) * 2)[0])
    return TaskModel(net, head), method, context


def make_loss_fn(model: TaskModel, method, context: BatchContext):
    """The trainer's per-part loss: task loss if labelled, DANN loss through a GRL, the method's extra."""

    def loss_fn(part: DomainBatch) -> torch.Tensor:
        context.set_batch(part.y, part.domain)
        f = model.net.features(part.x)
        loss = f.new_zeros(())
        if part.y is not None:
            loss = loss + method.task_loss(model.net.classify(f), part.y, f, context)
        if model.domain_head is not None:
            logits = model.domain_head(_Reverse.apply(f))
            loss = loss + F.cross_entropy(logits, torch.full((f.shape[0],), part.domain))
        extra = method.extra_loss(model.net)
        return loss + extra if extra is not None else loss

    return loss_fn


def train(model: TaskModel, method, context: BatchContext, parts: list[DomainBatch], steps: int,
          lr: float = 0.05) -> list[float]:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = make_loss_fn(model, method, context)
    return [float(method.training_step(model, optimizer, parts, loss_fn)) for _ in range(steps)]


def eval_logits(model: TaskModel, method, context: BatchContext, x: torch.Tensor,
                domain: int | None) -> torch.Tensor:
    model.eval()
    context.set_batch(None, domain)
    with torch.no_grad():
        return method.predict(model.net(x), context)


# -- C1–C4 -----------------------------------------------------------------------------------------------
def test_weight_projection_is_uniform():
    w = 0.3 + 0.05 * torch.randn(20000, generator=torch.Generator().manual_seed(0))
    q = CdfWeightQuantizer(8)
    z = ALPHA_W * (2 * weight_cdf(w) - 1)
    assert stats.kstest(z.numpy(), "uniform", args=(-ALPHA_W, 2 * ALPHA_W)).pvalue > KS_P_MIN
    assert q(w).abs().max() <= ALPHA_W


def test_activation_projection_is_uniform():
    torch.manual_seed(0)
    observed = {}
    quant = CdfActQuantizer(8)
    quant.observer = lambda x, z: observed.setdefault("z", z)  # plain callable: sees the aligned Z
    quant.train()
    quant(torch.randn(4000, 1, 2, 2))
    z = observed["z"].flatten().numpy()
    assert stats.kstest(z, "uniform", args=(-ALPHA_A, 2 * ALPHA_A)).pvalue > KS_P_MIN


def test_per_domain_projection_is_uniform():
    """EmaQ E1–E2: per-channel N(μ_c, σ_c) data projected with batch statistics is U(−α, α) per channel."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, 2, 2, generator=g) * torch.tensor([0.5, 2.0, 5.0]).view(1, 3, 1, 1) \
        + torch.tensor([-3.0, 0.0, 7.0]).view(1, 3, 1, 1)
    quant = DomainCdfActQuantizer(8, None, "per_domain_ema", 0.9)
    t = quant.train().standardize(x)
    for c in range(3):
        z = ALPHA_A * (2 * normal_cdf(t[:, c]) - 1)
        assert stats.kstest(z.flatten().numpy(), "uniform", args=(-ALPHA_A, 2 * ALPHA_A)).pvalue > KS_P_MIN


def test_weight_gradient_matches_c4_including_stat_terms():
    """Autograd = ∂L/∂q · 2α·φ(w; μ, σ) plus the terms through μ_w and σ_w (they are not detached)."""
    g = torch.Generator().manual_seed(0)
    w = (0.1 * torch.randn(64, generator=g)).requires_grad_()
    c = torch.randn(64, generator=g)
    (CdfWeightQuantizer(3)(w) * c).sum().backward()
    with torch.no_grad():
        mu, sigma, n = w.mean(), w.std(), w.numel()
        t = (w - mu) / sigma
        direct = c * 2 * ALPHA_W * normal_pdf(t) / sigma           # 2α·φ(w; μ, σ)·∂L/∂q
        a = c * normal_pdf(t)
        expected = 2 * ALPHA_W / sigma * (a - a.sum() / n - t * (a * t).sum() / (n - 1))
    torch.testing.assert_close(w.grad, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(w.grad, direct, rtol=1e-4, atol=1e-6)  # the μ/σ terms are really there


def test_activation_gradient_matches_c4():
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
    c = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    quant = CdfActQuantizer(4)
    quant.initialized.fill_(True)
    (quant.train()(x) * c).sum().backward()
    torch.testing.assert_close(x.grad, c * 2 * ALPHA_A * normal_pdf(x.detach()))


def test_paper_sigmoid_gradient_is_a_constant_scale_of_the_code_gradient():
    """Eq. 4's t(w_q) is 1 on every level (n odd), so the surrogate is the STE gradient × s(1)(1 − s(1))."""
    w = torch.randn(50, generator=torch.Generator().manual_seed(0))
    grads = {}
    for mode in ("code", "paper_sigmoid"):
        v = w.clone().requires_grad_()
        q = CdfWeightQuantizer(3, mode)(v)
        q.sum().backward()
        grads[mode] = v.grad
    s = torch.sigmoid(torch.tensor(1.0))
    torch.testing.assert_close(grads["paper_sigmoid"], grads["code"] * s * (1 - s))


# -- invariants of every CDF method ----------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("name", CDF_METHODS)
def test_level_counts(name, bits):
    model, method, context = build(name, bits, bits, num_domains=2)
    outputs: list[tuple[str, torch.Tensor]] = []
    for m in model.modules():
        if isinstance(m, Quantizer):
            m.register_forward_hook(lambda mod, inp, out: outputs.append((type(mod).__name__, out.detach())))
    x, y = make_batch([i % NUM_CLASSES for i in range(32)], seed=5)
    model.train()
    context.set_batch(y, 0)
    model.net(x)
    for domain in (1, None):
        eval_logits(model, method, context, x, domain)
    assert len(outputs) == 3 * 4  # 2 weight + 2 activation quantizers per forward
    for kind, out in outputs:
        assert out.unique().numel() <= 2**bits, (kind, out.unique().numel())
    assert max(out.unique().numel() for _, out in outputs) > 2 ** (bits - 1)  # the grid is really used


@pytest.mark.parametrize("name", CDF_METHODS)
def test_32_bits_is_bit_identical(name):
    torch.manual_seed(0)
    reference = TinyNet()
    net = copy.deepcopy(reference)
    prepare(net, get_method(name), 32, 32, None, make_context(2))
    x, _ = make_batch([0, 1, 2, 3])
    for mode in (False, True):
        reference.train(mode), net.train(mode)
        assert torch.equal(reference(x), net(x))
    assert not any(isinstance(m, Quantizer) for m in net.modules())


@pytest.mark.parametrize("name", CDF_METHODS)
def test_checkpoint_round_trip(name):
    model, method, context = build(name, num_domains=2, dann=True)
    train(model, method, context, two_domain_parts(), steps=3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh, fresh_method, fresh_context = build(name, num_domains=2, dann=True, seed=99)
    fresh.load_state_dict(saved["model"])
    fresh_method.load_state_dict(saved["method"])
    x, _ = make_batch([0, 1, 2, 3, 0, 1], seed=7)
    for domain in (0, 1, None):
        assert torch.equal(eval_logits(model, method, context, x, domain),
                           eval_logits(fresh, fresh_method, fresh_context, x, domain))
    assert method.state_dict().keys() == fresh_method.state_dict().keys()


@pytest.mark.parametrize("task", ["two_domain", "long_tailed"])
@pytest.mark.parametrize("name", CDF_METHODS)
def test_trains_without_nan_and_lowers_loss(name, task):
    dann = task == "two_domain"
    parts = two_domain_parts() if dann else long_tailed_parts()
    model, method, context = build(name, 3, 3, num_domains=2 if dann else 1, dann=dann, calib=parts[0].x)
    losses = train(model, method, context, parts, steps=10)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_count_labels_matches_bincount():
    from methods.context import count_labels

    labels = torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(0))
    labels[0] = 9  # class 9 seen, class 8 not: K = 10 keeps the empty bin
    expected = torch.bincount(labels, minlength=10).float()
    assert torch.equal(count_labels(labels, 10), expected)
    assert torch.equal(count_labels(labels, None), expected)
    assert count_labels(labels, 10).dtype == torch.float32
