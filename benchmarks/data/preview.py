"""Save a grid of training samples per domain: one row per domain, ``--per-class`` images of each class.

    python -m benchmarks.data.preview --out reports/domains.png            # every offline domain
    python -m benchmarks.data.preview --datasets mnist svhn --root /data   # any registered names

All domains are shown at 28x28 RGB (the common digits format of a task), so the grid shows what a model sees.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.data.registry import dataset_info, load_domain
from benchmarks.data.splits import convert

OFFLINE = ("mnist", "mnistm-synth", "syndigits-synth", "optdigits")


def sample_grid(name: str, root: str | None, per_class: int, size: tuple[int, int], seed: int = 0,
                options: dict | None = None) -> torch.Tensor:
    """``per_class`` training images of each class of one domain, uint8 (per_class * K, 3, H, W), class
    order."""
    split = load_domain(name, root, **(options or {})).train
    k = dataset_info(name).num_classes
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(k):
        idx = torch.nonzero(split.labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return convert(split.images[torch.cat(picks)], 3, size)


def save_preview(out: str | Path, datasets: tuple[str, ...] = OFFLINE, root: str | None = None,
                 per_class: int = 2, size: tuple[int, int] = (28, 28),
                 options: dict[str, dict] | None = None) -> Path:
    """Write the grid PNG; ``options`` maps a dataset name to loader options (e.g. smaller generated sets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, sample_grid(name, root, per_class, size, options=(options or {}).get(name)))
            for name in datasets]
    cols = max(len(r) for _, r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(cols * 0.45, len(rows) * 0.7 + 0.2), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], rows):
        strip = torch.cat(list(imgs.permute(0, 2, 3, 1)), dim=1)  # (H, n*W, 3)
        ax.imshow(strip.numpy(), interpolation="nearest")
        ax.set_yticks([])
        ax.set_xticks([(i + 0.5) * size[1] for i in range(0, len(imgs), per_class)])
        ax.set_xticklabels([str(c) for c in range(len(imgs) // per_class)], fontsize=6)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/domains.png")
    p.add_argument("--root", default=None, help="data root (default: $QBENCH_DATA_ROOT or ./data)")
    p.add_argument("--datasets", nargs="+", default=list(OFFLINE))
    p.add_argument("--per-class", type=int, default=2)
    a = p.parse_args(argv)
    print(save_preview(a.out, tuple(a.datasets), a.root, a.per_class))


if __name__ == "__main__":
    main()
