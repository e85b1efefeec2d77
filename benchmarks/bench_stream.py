"""Images per second through ``ImageNetStream`` (decode + augment in DataLoader workers, normalise), for
several worker counts: the input pipeline of a streamed ImageNet run, without a model.

It reads an ILSVRC-style folder (``--data-root`` holding ``imagenet/train/<wnid>/``), or writes a fake one of
random-pixel JPEGs of ``--fake-side`` pixels first (``--fake-classes`` × ``--fake-per-class``). Each worker
count reads ``--batches`` training batches of ``--batch-size`` at ``--size`` px after one warm-up batch
(worker start-up is left out: a run's persistent workers start once).

    .venv/bin/python benchmarks/bench_stream.py --workers 0 2
    .venv/bin/python benchmarks/bench_stream.py --fake-side 375x500 --size 224 --batches 8
    .venv/bin/python benchmarks/bench_stream.py --data-root /data --workers 8 16 --batch-size 256

No numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli.args import OneLineParser  # noqa: E402
from benchmarks.cli.checks import check_int  # noqa: E402
from benchmarks.data.imagenet import ImageNetStream, imagenet_samples, write_fake_imagenet  # noqa: E402


def images_per_second(root: Path, workers: int, batch_size: int, size: int, batches: int) -> float:
    samples, _ = imagenet_samples(root, "train")
    stream = ImageNetStream(samples, batch_size=batch_size, train=True, seed=0, size=size, workers=workers)
    epoch = stream.epoch(0, 0, batches + 1)
    next(epoch)  # warm-up: worker start-up and the first batch
    start = time.perf_counter()
    count = sum(len(y) for _, y in epoch)
    return count / (time.perf_counter() - start)


def _side(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    try:
        return int(height), int(width or height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid side {text!r}; expected HxW or N, e.g. 375x500") from None


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-root", default=None, help="holds imagenet/train/ (default: a fake folder)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=32, help="training crop side (the grid's is 224)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per worker count")
    parser.add_argument("--fake-side", type=_side, default=(40, 44), help="fake JPEG size, HxW")
    parser.add_argument("--fake-classes", type=int, default=4)
    parser.add_argument("--fake-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        for flag, value, low in (("--batch-size", args.batch_size, 1), ("--size", args.size, 8),
                                 ("--batches", args.batches, 1), ("--fake-classes", args.fake_classes, 1),
                                 ("--fake-per-class", args.fake_per_class, 1), *(
                                     ("--workers", w, 0) for w in args.workers)):
            check_int(flag, value, low)
    except ValueError as err:
        parser.error(str(err))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data_root) if args.data_root else Path(scratch)
        if not args.data_root:
            height, width = args.fake_side
            write_fake_imagenet(root, classes=args.fake_classes, train_per_class=args.fake_per_class,
                                val_per_class=1, height=height, width=width)
        needed = (args.batches + 1) * args.batch_size
        found = len(imagenet_samples(root, "train")[0])
        if found < needed:
            parser.error(f"invalid --batches {args.batches}; the {found} training images hold "
                         f"{found // args.batch_size - 1} timed batches of {args.batch_size}")
        print(f"{'workers':>7} {'images/s':>9}  (batch {args.batch_size}, {args.size} px, {found} images)")
        for workers in args.workers:
            rate = images_per_second(root, workers, args.batch_size, args.size, args.batches)
            print(f"{workers:>7} {rate:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
