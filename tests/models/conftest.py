"""Tests of benchmarks/models/: architectures, shapes, torchvision weights layout."""
