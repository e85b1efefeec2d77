"""Architecture registry: ``build_model(name, num_classes, ...)``, ``available_archs()``, ``@register_arch``.

Every model is a ``Backbone`` (``base.py``): ``features``/``classify``/``feature_dim``/``make_domain_head``,
modules registered in data-flow order. Architectures and their sources: docs/architectures.md.
"""

from benchmarks.models.base import Backbone, boundary_layers, load_pretrained
from benchmarks.models.registry import arch_options, available_archs, build_model, register_arch

# importing the architecture modules registers them
from benchmarks.models import cifar_resnet, digits, mnist_cnn, mobilenet, tv_resnet  # noqa: F401  isort: skip

__all__ = [
    "Backbone",
    "arch_options",
    "available_archs",
    "boundary_layers",
    "build_model",
    "load_pretrained",
    "register_arch",
]
