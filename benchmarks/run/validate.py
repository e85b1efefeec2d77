"""Up-front validation of run specs: every name must be registered, every option valid, before anything
is launched, so a typo never costs a queued job (or touches a finished run)."""
from __future__ import annotations

from typing import Any, cast

from benchmarks.data.domaingen import get_suite, held_out_domains, is_suite
from benchmarks.data.registry import dataset_info
from benchmarks.models import arch_options, available_archs
from benchmarks.run.spec import RunSpec
from methods import LayerPolicy, get_method
from methods.quant import check_bits


def validate_spec(spec: RunSpec) -> None:
    """Raise a one-line ValueError naming the bad value and the valid choices."""
    if is_suite(spec.task.dataset):  # a domain-generalization suite: the target names held-out domains
        held_out_domains(get_suite(spec.task.dataset), spec.task.target)
    elif spec.task.trial is not None:
        raise ValueError(f"trial={spec.task.trial} applies only to domain-generalization suites, "
                         f"not {spec.task.dataset!r}")
    else:
        dataset_info(spec.task.dataset)
        if spec.task.target is not None:
            dataset_info(spec.task.target)
    if spec.arch not in available_archs():
        raise ValueError(f"unknown architecture {spec.arch!r}; valid: {', '.join(available_archs())}")
    # build_model takes 'pretrained' itself, beside the builder's own options
    valid = sorted({*arch_options(spec.arch), "pretrained"})
    unknown = sorted(set(spec.arch_options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for architecture {spec.arch!r}; "
                         f"valid: {', '.join(valid)}")
    get_method(spec.method, **spec.hparams)
    check_bits(spec.w_bits, "weight bits")
    check_bits(spec.a_bits, "activation bits")
    layer_policy_of(spec)


def layer_policy_of(spec: RunSpec) -> LayerPolicy | None:
    """The spec's first/last-layer policy (None: the method's default); a ValueError names a bad mode."""
    if spec.layer_policy is None:
        return None
    return LayerPolicy(**cast(dict[str, Any], spec.layer_policy))
