"""A tuning study: its options (what is searched, how trials run), its Optuna storage, creating and loading it,
and the FP parent its QAT trials start from."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmarks.run.rundir import HEARTBEAT_STALE_S
from benchmarks.tuning.search_spaces import make_sampler, split_params
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec

Log = Callable[[str], None]


@dataclass
class TuneOptions:
    """One study. ``config()`` (what is searched) is stored in the study and must match on every rerun;
    ``n_trials`` and the operational fields may change between runs (more trials extend the study)."""

    method: str
    task: TaskSpec
    arch: str
    recipe: Recipe  # lr and weight_decay are replaced by each trial's values
    space: dict[str, list]
    w_bits: int = 32
    a_bits: int = 32
    seed: int = 0
    fp_recipe: Recipe | None = None  # QAT: how the FP parent (trained once per study) trains
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
        from benchmarks.tuning.frozen import task_slug

        cell = f"{self.method}__{task_slug(self.task.label)}__{self.arch}__w{self.w_bits}a{self.a_bits}"
        return self.study_name or cell

    @property
    def study_dir(self) -> Path:
        return Path(self.output).resolve() / "tuning" / self.name

    def config(self) -> dict[str, Any]:
        spec = self.spec({})
        return {"method": self.method, "task": asdict(self.task), "arch": self.arch, "w_bits": self.w_bits,
                "a_bits": self.a_bits, "seed": self.seed, "recipe": spec.to_dict()["recipe"],
                "fp_recipe": spec.to_dict()["fp_recipe"], "space": self.space, "sampler": self.sampler,
                "sampler_seed": self.sampler_seed, "tpe_startup": self.tpe_startup,
                "pruner_startup": self.pruner_startup, "pruner_warmup": self.pruner_warmup}

    def ops(self) -> dict[str, Any]:
        return {"n_trials": self.n_trials, "stale_after_s": self.stale_after_s,
                "max_retries": self.max_retries, "data_root": self.data_root, "device": self.device}

    @classmethod
    def from_study(cls, study, output: Path, storage: str | None) -> "TuneOptions":
        config, ops = dict(study.user_attrs["config"]), study.user_attrs["ops"]
        config["task"] = TaskSpec(**config["task"])
        config["recipe"] = Recipe.from_dict(config["recipe"])
        config["fp_recipe"] = Recipe.from_dict(config["fp_recipe"]) if config["fp_recipe"] else None
        return cls(**config, **ops, output=Path(output), storage=storage, study_name=study.study_name)

    def spec(self, params: dict[str, Any]) -> RunSpec:
        """The run of a trial with these params (recipe knobs into the recipe, the rest as method hparams)."""
        recipe_overrides, hparams = split_params(params)
        recipe = Recipe.from_dict({**asdict(self.recipe), **recipe_overrides})
        return RunSpec(task=self.task, arch=self.arch, method=self.method, recipe=recipe, w_bits=self.w_bits,
                       a_bits=self.a_bits, seed=self.seed, hparams=hparams, fp_recipe=self.fp_recipe)

    def validate(self) -> None:
        from benchmarks.run.validate import validate_spec

        validate_spec(self.spec({}))
        make_sampler(self.sampler, self.sampler_seed)
        if not 0 < self.task.val_fraction < 1:
            raise ValueError("tuning selects on the validation split: val_fraction must be in (0, 1)")


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
        diff = sorted(k for k in config if config[k] != stored.get(k))
        raise ValueError(f"study {options.name!r} exists with other settings ({', '.join(diff)}); use "
                         "another --output or --study-name")
    if stored is None:
        study.set_user_attr("config", config)
        for params in enqueue:
            study.enqueue_trial(params)
    study.set_user_attr("ops", options.ops())
    study.set_user_attr("output", str(options.study_dir))
    study.set_user_attr("storage", options.storage or str(options.study_dir / "journal.log"))
    return _attach(study, options)


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

    parent = options.spec({}).parent()
    if parent is not None:
        run(parent, options.study_dir, grid=f"tune/{options.name}", data_root=options.data_root,
            device=options.device, log=log, eval_test=False)
