"""``python -m benchmarks.models [--num-classes N]``: every architecture with its parameter count,
natural input size and default options, as the Markdown rows docs/architectures.md is built from."""

from __future__ import annotations

import argparse

from benchmarks.models import arch_options, available_archs, build_model

# the input each architecture is meant for (the nets with global pooling accept other sizes too)
NATURAL_INPUT = {"dann_digits": (28, 28), "resnet18": (224, 224), "resnet50": (224, 224)}


def param_count(name: str, num_classes: int, **options: object) -> int:
    size = NATURAL_INPUT.get(name, (32, 32))
    return sum(p.numel() for p in build_model(name, num_classes, input_size=size, **options).parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    args = parser.parse_args()
    print("| name | params | input | default options |")
    print("|---|---|---|---|")
    for name in available_archs():
        size = NATURAL_INPUT.get(name, (32, 32))
        options = ", ".join(f"{k}={v!r}" for k, v in arch_options(name).items()) or "-"
        print(f"| {name} | {param_count(name, args.num_classes):,} | {size[0]}x{size[1]} | {options} |")


if __name__ == "__main__":
    main()
