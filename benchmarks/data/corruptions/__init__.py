"""CIFAR-10-C-style corruptions of any uint8 image batch: ``corrupt(images, name, severity, seed)``.

The 15 benchmark corruptions (in CoTTA's stream order) and 4 extra ones at severities 1..5 with the 32x32
constants of CIFAR-10-C; 28x28 images are edge-padded to 32 and cropped back, grey images are corrupted as RGB
and averaged back to one channel. See docs/datasets.md (Corruptions) for provenance and differences.
"""
from benchmarks.data.corruptions.apply import ALL, CONTINUAL_ORDER, EXTRA_NAMES, corrupt, corrupt_image

__all__ = ["ALL", "CONTINUAL_ORDER", "EXTRA_NAMES", "corrupt", "corrupt_image"]
