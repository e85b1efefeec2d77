"""Per-call speed of each quantizer kernel against the composite it replaced (issue #8), forward + backward.

Every fused kernel in ``methods/`` is bit-identical to a ``*_reference`` composite of autograd ops. For one
activation-sized tensor (default 128×16×32×32, channels_last: ResNet-20's first stage at batch 128) this
prints the median time of kernel(x) + backward for the fused kernel, its reference, and the opt-in
non-bit-identical fast paths (marked ``opt-in``), with ``relu`` as the cost of one plain element-wise op and
its backward. The ratios (× reference, × relu) are what to compare across machines; ``bench_speed.py`` times
whole training steps.

    .venv/bin/python benchmarks/bench_kernels.py
    .venv/bin/python benchmarks/bench_kernels.py --shape 64,64,8,8 --repeats 50 --device cuda

No numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.cli.args import OneLineParser  # noqa: E402
from benchmarks.cli.checks import check_device, check_int  # noqa: E402
from benchmarks.speed.setup import reference_kernels  # noqa: E402
from methods import lsq, quant  # noqa: E402
from methods.dorefa import dorefa_activation, dorefa_activation_reference  # noqa: E402

BITS, EPS = 4, 1e-5
Kernel = Callable[[torch.Tensor], torch.Tensor]


def _first(fn: Callable[..., tuple[torch.Tensor, ...]]) -> Kernel:
    return lambda x: fn(x, EPS)[0]


def kernels(features: int) -> list[tuple[str, str, Kernel]]:
    """(group, variant, f(x) -> tensor to back-propagate through): fused, reference, then opt-ins."""
    step = torch.tensor(0.1, requires_grad=True)
    lsq_scale = 1.0 / math.sqrt(features * (2**BITS - 1))
    return [
        ("relu", "baseline", torch.relu),
        ("lsq_quantize", "fused", lambda x: lsq.lsq_quantize(x, step, 0, 2**BITS - 1, lsq_scale)),
        ("lsq_quantize", "reference",
         lambda x: lsq.lsq_quantize_reference(x, step, 0, 2**BITS - 1, lsq_scale)),
        ("dorefa_activation", "fused", lambda x: dorefa_activation(x, BITS, False)),
        ("dorefa_activation", "reference", lambda x: dorefa_activation_reference(x, BITS, False)),
        ("normal_cdf", "fused", quant.normal_cdf),
        ("normal_cdf", "reference", quant.normal_cdf_reference),
        ("cdf_grid", "fused", lambda x: quant.cdf_grid(torch.sigmoid(x), BITS, 2.0)),
        ("cdf_grid", "reference", lambda x: quant.cdf_grid_reference(torch.sigmoid(x), BITS, 2.0)),
        ("batch_standardize", "fused", _first(quant.batch_standardize)),
        ("batch_standardize", "reference", _first(quant.batch_standardize_reference)),
        ("batch_standardize", "opt-in native_bn", _first(quant.batch_standardize_native)),
    ]


def time_call(kernel: Kernel, x: torch.Tensor, grad: torch.Tensor, repeats: int, warmup: int) -> float:
    """Median seconds of one forward + backward of ``kernel`` on a fresh leaf copy of x."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        sync()
        start = time.perf_counter()
        kernel(leaf).backward(grad)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128,16,32,32", help="N,C,H,W of the activation tensor")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    try:
        args.shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        parser.error(f"invalid --shape {args.shape!r}; valid: comma-separated integers, e.g. 128,16,32,32")
    if len(args.shape) != 4 or min(args.shape) < 1:
        shape = ",".join(map(str, args.shape))
        parser.error(f"invalid --shape {shape}; valid: four positive integers N,C,H,W")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"invalid --repeats {args.repeats} / --warmup {args.warmup}; valid: >= 1 / >= 0")
    try:
        check_device(args.device)
        check_int("--threads", args.threads, 1)
    except ValueError as err:
        parser.error(str(err).removeprefix("invalid "))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(*args.shape, generator=g) * 1.5 + 0.3).to(device)
    grad = torch.randn(*args.shape, generator=g).to(device)
    if args.channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    rows = []
    for group, variant, fn in kernels(math.prod(args.shape[1:])):
        # A reference may call other fused kernels (cdf_grid_reference calls quantize_unit): swap all back.
        with reference_kernels(variant == "reference"):
            rows.append((group, variant, time_call(fn, x, grad, args.repeats, args.warmup)))
    relu = rows[0][2]
    reference = {group: t for group, variant, t in rows if variant == "reference"}
    layout = "channels_last" if args.channels_last else "contiguous"
    print(f"### Kernel forward+backward — {device}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, x {'x'.join(map(str, args.shape))} {layout}, "
          f"median of {args.repeats}\n")
    print("| kernel | variant | ms per call | × reference | × relu |\n| --- | --- | ---: | ---: | ---: |")
    for group, variant, t in rows:
        vs_ref = f"{t / reference[group]:.2f}" if group in reference else "–"
        print(f"| {group} | {variant} | {t * 1e3:.2f} | {vs_ref} | {t / relu:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
