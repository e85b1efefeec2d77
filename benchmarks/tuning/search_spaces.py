"""Search spaces for tuning: the shared recipe knobs here, each method's own knobs beside its defaults.

A space maps a name to ``("float", low, high, log)``, ``("int", low, high)`` or
``("categorical", [choices])``, the format of ``QuantMethod.search_space``. Shared names (``lr``,
``weight_decay``) override the run's ``Recipe``; every other name is a method hyper-parameter
(``RunSpec.hparams``). Spaces are plain JSON-able data so a study can store the exact space it searched
(study user attr ``config.space``).
"""
from __future__ import annotations

from typing import Any

from methods.registry import method_class

# SGD with momentum (benchmarks.run.trainer_parts.make_optimizer); ranges wide enough for FP training and for
# QAT fine-tuning from an FP parent, log-uniform because both knobs act multiplicatively.
SHARED_SPACE: dict[str, tuple] = {
    "lr": ("float", 1e-4, 0.3, True),
    "weight_decay": ("float", 1e-6, 1e-2, True),
}
RECIPE_KEYS: tuple[str, ...] = tuple(SHARED_SPACE)


def search_space(method: str, overrides: dict[str, tuple] | None = None) -> dict[str, list]:
    """The full space of ``method``: shared knobs, then the method's ``search_space``, then ``overrides``
    (e.g. a wider ``lr`` range). Raises ValueError for a malformed entry or a name the method does not
    accept."""
    cls = method_class(method)
    clash = sorted(set(cls.search_space) & set(SHARED_SPACE))
    if clash:
        raise ValueError(f"method {method!r} declares {clash[0]!r}, a shared recipe knob; remove it from its "
                         "search_space")
    space = {**SHARED_SPACE, **cls.search_space, **(overrides or {})}
    for name, entry in space.items():
        if name not in RECIPE_KEYS and name not in cls.defaults:
            raise ValueError(f"search space name {name!r} is not a knob of method {method!r}; valid: "
                             f"{', '.join(list(RECIPE_KEYS) + sorted(cls.defaults))}")
        _check(name, entry)
    return {name: list(entry) for name, entry in space.items()}


def _check(name: str, entry: Any) -> None:
    kind = entry[0] if isinstance(entry, (list, tuple)) and entry else None
    ok = (kind == "float" and len(entry) == 4 and entry[1] < entry[2] and (not entry[3] or entry[1] > 0)) or \
         (kind == "int" and len(entry) == 3 and entry[1] <= entry[2]) or \
         (kind == "categorical" and len(entry) == 2 and len(entry[1]) > 0)
    if not ok:
        raise ValueError(f"invalid search space entry {name}={entry!r}; expected ('float', low, high, log), "
                         "('int', low, high) or ('categorical', [choices])")


def parse_range(text: str, log: bool = True) -> tuple:
    """'1e-5:1.0' -> ('float', 1e-05, 1.0, log): a CLI override of a float range."""
    low, sep, high = text.partition(":")
    try:
        entry = ("float", float(low), float(high), log)
    except ValueError:
        raise ValueError(f"invalid range {text!r}; expected LOW:HIGH such as 1e-5:1.0") from None
    if not sep:
        raise ValueError(f"invalid range {text!r}; expected LOW:HIGH such as 1e-5:1.0")
    _check("range", entry)
    return entry


def suggest(trial, space: dict[str, list]) -> dict[str, Any]:
    """Ask an Optuna trial for one value of every knob of ``space``."""
    params: dict[str, Any] = {}
    for name, entry in space.items():
        if entry[0] == "float":
            params[name] = trial.suggest_float(name, entry[1], entry[2], log=bool(entry[3]))
        elif entry[0] == "int":
            params[name] = trial.suggest_int(name, entry[1], entry[2])
        else:
            params[name] = trial.suggest_categorical(name, list(entry[1]))
    return params


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trial params -> (recipe overrides, method hyper-parameters)."""
    recipe = {k: v for k, v in params.items() if k in RECIPE_KEYS}
    return recipe, {k: v for k, v in params.items() if k not in RECIPE_KEYS}


SAMPLERS = ("tpe", "random")


def make_sampler(kind: str, seed: int, tpe_startup: int = 4):
    """A sampler whose randomness for trial k comes from (seed, k) only.

    A fresh inner sampler is seeded from (seed, trial number) in ``before_trial``. So ``random`` is
    DomainBed-style seeded random search: trial k's params depend on nothing else, bit-reproducible under any
    parallelism or worker restarts. ``tpe`` is reproducible when trials run one after another (its proposals
    also depend on the finished trials it sees); in parallel, distinct trial numbers at least keep workers
    from proposing identical points, which a shared fixed seed would (and identical points share a run dir).
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; valid: {', '.join(SAMPLERS)}")
    return _PerTrialSeeded(kind, int(seed), int(tpe_startup))


class _PerTrialSeeded:
    def __init__(self, kind: str, seed: int, tpe_startup: int) -> None:
        self.kind, self.seed, self.tpe_startup = kind, seed, tpe_startup
        self._inner = self._make(seed)

    def _make(self, seed: int):
        import warnings

        import optuna

        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():  # multivariate/constant_liar are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.tpe_startup, multivariate=True,
                                              constant_liar=True)

    def before_trial(self, study, trial) -> None:
        self._inner = self._make((self.seed * 1_000_003 + trial.number) % 2**32)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
