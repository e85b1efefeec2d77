"""A tuning study: its options (the base run its trials vary, what is searched, how trials run), its Optuna
storage, creating and loading it, and the FP parent its QAT trials start from."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmarks.run.labels import cell_name, check_plain_name
from benchmarks.run.redact import redact_url
from benchmarks.run.rundir import HEARTBEAT_STALE_S
from benchmarks.run.spec import RunSpec
from benchmarks.tuning.search_spaces import make_sampler, split_params

Log = Callable[[str], None]


@dataclass
class TuneOptions:
    """One study. ``base`` is the run every trial varies (the same spec the matrix would run: task, arch,
    arch options, layer policy, recipes, fixed method knobs); a trial replaces the knobs of ``space`` in it.
    ``config()`` (base spec + what is searched) is stored in the study and must match on every rerun;
    ``n_trials`` and the operational fields may change between runs (more trials extend the study)."""

    base: RunSpec
    space: dict[str, list]
    sampler: str = "tpe"
    sampler_seed: int = 0
    tpe_startup: int = 4
    pruner_startup: int = 3
    pruner_warmup: int = 0
    n_trials: int = 8
    output: Path = Path("outputs/tune")
    storage: str | None = None  # RDB URL; None: the journal file in the study directory
    study_name: str | None = None
    stale_after_s: float = float(HEARTBEAT_STALE_S)
    max_retries: int = 2
    data_root: str | None = None
    device: str = "auto"

    @property
    def name(self) -> str:
        base = self.base
        return self.study_name or cell_name(base.method, base.task.label, base.arch, base.w_bits, base.a_bits)

    @property
    def study_dir(self) -> Path:
        return Path(self.output).resolve() / "tuning" / self.name

    def config(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "space": self.space, "sampler": self.sampler,
                "sampler_seed": self.sampler_seed, "tpe_startup": self.tpe_startup,
                "pruner_startup": self.pruner_startup, "pruner_warmup": self.pruner_warmup}

    def ops(self) -> dict[str, Any]:
        return {"n_trials": self.n_trials, "stale_after_s": self.stale_after_s,
                "max_retries": self.max_retries, "data_root": self.data_root, "device": self.device}

    @classmethod
    def from_study(cls, study, output: Path, storage: str | None) -> "TuneOptions":
        config, ops = dict(study.user_attrs["config"]), study.user_attrs["ops"]
        if "base" not in config:
            raise ValueError(f"study {study.study_name!r} was made by an older tune.py that did not store "
                             "its base run spec; start a new study (another --output or --study-name)")
        config["base"] = RunSpec.from_dict(config["base"])
        return cls(**config, **ops, output=Path(output), storage=storage, study_name=study.study_name)

    def spec(self, params: dict[str, Any]) -> RunSpec:
        """The run of a trial with these params: recipe knobs into the base recipe, the rest over the base's
        method hparams (a searched knob wins over a fixed one of the same name)."""
        recipe_overrides, hparams = split_params(params)
        return self.base.with_(recipe=replace(self.base.recipe, **recipe_overrides),
                               hparams={**self.base.hparams, **hparams})

    def validate(self) -> None:
        from benchmarks.run.validate import validate_spec

        validate_spec(self.base)
        if self.study_name is not None:
            check_plain_name("--study-name", self.study_name, "<output>/tuning/<name>")
        make_sampler(self.sampler, self.sampler_seed)
        if not 0 < self.base.task.val_fraction < 1:
            raise ValueError(f"tuning selects on the validation split: val_fraction must be in (0, 1), got "
                             f"{self.base.task.val_fraction}")


def open_storage(study_dir: Path, url: str | None):
    """The RDB at ``url``, else a journal file in the study directory, locked by O_CREAT|O_EXCL lock files
    (``JournalFileOpenLock``): safe on NFSv3+, where the fcntl locks SQLite relies on are not."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url:
        return optuna.storages.RDBStorage(url)
    study_dir.mkdir(parents=True, exist_ok=True)
    path = str(study_dir / "journal.log")
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def prepare_study(options: TuneOptions, enqueue: Iterable[dict[str, Any]] = ()):
    """Create the study (or load it, checking it searches the same thing) and record how it runs.
    ``enqueue``: params of the first trials of a new study (e.g. the paper's defaults); knobs left out are
    sampled."""
    import optuna

    options.validate()
    enqueue = list(enqueue)
    unknown = sorted({key for params in enqueue for key in params} - set(options.space))
    if unknown:
        raise ValueError(f"enqueued param {unknown[0]!r} is not in the search space "
                         f"({', '.join(options.space)})")
    storage = open_storage(options.study_dir, options.storage)
    study = optuna.create_study(study_name=options.name, storage=storage, direction="maximize",
                                load_if_exists=True)
    config = json.loads(json.dumps(options.config()))  # as stored: tuples become lists
    stored = study.user_attrs.get("config")
    if stored is not None and stored != config:
        diff = _differences(stored, config)
        raise ValueError(f"study {options.name!r} exists with other settings ({', '.join(diff)}); use "
                         "another --output or --study-name")
    if stored is None:
        study.set_user_attr("config", config)
        for params in enqueue:
            study.enqueue_trial(params)
    study.set_user_attr("ops", options.ops())
    study.set_user_attr("output", str(options.study_dir))
    study.set_user_attr("storage", redact_url(options.storage) or str(options.study_dir / "journal.log"))
    return _attach(study, options)


def _differences(stored: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The settings that differ, the base spec's field by field (``base.arch_options``): the message says
    what differs."""
    diff = sorted(k for k in config if k != "base" and config[k] != stored.get(k))
    old_base, new_base = stored.get("base") or {}, config["base"]
    return sorted(f"base.{k}" for k in new_base if new_base[k] != old_base.get(k)) + diff


def load_study(output: Path, study_name: str, storage: str | None = None):
    """Open an existing study from a worker: returns (study, options), everything rebuilt from the storage."""
    import optuna

    study_dir = Path(output).resolve() / "tuning" / study_name
    study = optuna.load_study(study_name=study_name, storage=open_storage(study_dir, storage))
    options = TuneOptions.from_study(study, output, storage)
    return _attach(study, options), options


def _attach(study, options: TuneOptions):
    import optuna

    study.sampler = make_sampler(options.sampler, options.sampler_seed, options.tpe_startup)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=options.pruner_startup,
                                               n_warmup_steps=options.pruner_warmup)
    return study


def ensure_parent(options: TuneOptions, log: Log = print) -> None:
    """Train the FP parent of QAT trials once, in the study directory, without evaluating the test split."""
    from benchmarks.run.trainer import run

    parent = options.base.parent()
    if parent is not None:
        run(parent, options.study_dir, grid=f"tune/{options.name}", data_root=options.data_root,
            device=options.device, log=log, eval_test=False)
