"""RunSpec is the only spec: a study varies one base run, the same the matrix runs (architecture options and
layer policy included); its frozen file records that run, and applying it to another run is refused."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from benchmarks.matrix.expand import Filters, expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.rundir import RunDir, read_json
from benchmarks.tune import build_parser, main, options_from_args
from benchmarks.tuning.frozen import apply_tuned, load_tuned, recorded_spec, spec_mismatch
from benchmarks.tuning.grid_cell import grid_cell_spec
from benchmarks.tuning.search_spaces import search_space
from benchmarks.tuning.study import TuneOptions, load_study, prepare_study
from tests.tuning.support import ARCH_OPTIONS, LAYER_POLICY, optioned_grid

CELL = ["--method", "lsq", "--dataset", "optdigits", "--arch", "dann_digits", "--bits", "4/4"]
# the optioned grid's quick recipes, spelt with flags
FLAGS = ["--epochs", "2", "--batch-size", "64", "--steps-per-epoch", "8", "--fp-epochs", "2",
         "--fp-lr", "0.05"]


def _matrix(grid_path, method: str = "lsq"):
    """(the matrix's FP run, its run of ``method``) for the optioned grid's one cell."""
    specs = expand(load_grid(str(grid_path)), "quick", Filters(methods=("fp", method)))
    return next(s for s in specs if s.method == "fp"), next(s for s in specs if s.method == method)


def _frozen(base, space) -> dict:
    """A frozen file's content as load_tuned returns it, for a study of ``base``."""
    return {"format": 2, "spec": recorded_spec(base, space), "hparams": {}, "path": "tuned.json",
            "recipe_overrides": {"lr": 0.02, "weight_decay": 1e-4}}


def test_study_with_arch_options_trains_the_matrix_model(tmp_path):
    grid = optioned_grid(tmp_path)
    output, frozen_root = tmp_path / "out", tmp_path / "frozen"
    code = main(["--grid", str(grid), "--profile", "quick", *CELL, "--trials", "2", "--sampler", "random",
                 "--output", str(output), "--freeze", "--hparams-dir", str(frozen_root), "--no-mlflow"])
    assert code == 0
    matrix_fp, matrix_qat = _matrix(grid)
    study, options = load_study(output, "lsq__optdigits__dann_digits__w4a4")
    assert options.base == matrix_qat  # the study's base run is the matrix's run of this cell
    assert RunDir.of(options.study_dir, matrix_fp.run_id).is_done()  # its FP parent is the matrix's FP run
    assert len(study.trials) == 2
    for trial in study.trials:
        spec = read_json(RunDir.of(options.study_dir, trial.user_attrs["run_id"]).spec_path)["spec"]
        assert spec["arch_options"] == ARCH_OPTIONS and spec["layer_policy"] == LAYER_POLICY
        assert spec["init_from"] == matrix_fp.run_id
    assert study.user_attrs["config"]["base"] == json.loads(json.dumps(matrix_qat.to_dict()))
    tuned = load_tuned("lsq", "optdigits", "dann_digits", 4, 4, root=frozen_root)
    assert tuned["spec"]["arch_options"] == ARCH_OPTIONS and tuned["spec"]["layer_policy"] == LAYER_POLICY
    assert spec_mismatch(tuned, matrix_qat) == []
    assert apply_tuned(matrix_qat, tuned).recipe.lr == tuned["recipe_overrides"]["lr"]


def test_flags_build_the_same_base_as_the_grid(tmp_path):
    """--arch-option and --first-last spell the grid's run by hand: same FP parent, nothing to refuse. Left
    out (the old tune.py), the FP parent is another model and the frozen file is refused."""
    grid = optioned_grid(tmp_path)
    matrix_fp, matrix_qat = _matrix(grid)
    args = [*CELL, *FLAGS, "--output", str(tmp_path)]
    by_hand = options_from_args(build_parser().parse_args(
        args + ["--arch-option", "dropout=0.25", "--first-last", "fp/8bit"]))
    assert by_hand.base.arch_options == ARCH_OPTIONS and by_hand.base.layer_policy == LAYER_POLICY
    assert by_hand.base.parent().run_id == matrix_fp.run_id
    assert spec_mismatch(_frozen(by_hand.base, by_hand.space), matrix_qat) == []
    forgot = options_from_args(build_parser().parse_args(args)).base
    assert forgot.parent().run_id != matrix_fp.run_id
    assert spec_mismatch(_frozen(forgot, by_hand.space), matrix_qat) == [
        'arch_options {} != {"dropout": 0.25}', 'layer_policy null != {"first": "fp", "last": "8bit"}']


def test_mismatch_is_refused_except_seed_test_subsample_and_searched_knobs(tmp_path):
    _, spec = _matrix(optioned_grid(tmp_path))
    space = search_space("lsq")
    tuned = _frozen(spec, space)
    for same in (spec.with_(seed=7), spec.with_(task=replace(spec.task, test_subsample=100)),
                 spec.with_(recipe=replace(spec.recipe, lr=0.5, weight_decay=0.0))):
        assert spec_mismatch(tuned, same) == []
    cases = {"arch_options": spec.with_(arch_options={}), "layer_policy": spec.with_(layer_policy=None),
             "recipe.epochs": spec.with_(recipe=replace(spec.recipe, epochs=3)),
             "fp_recipe.lr": spec.with_(fp_recipe=replace(spec.fp_recipe, lr=0.1)),
             "task.val_fraction": spec.with_(task=replace(spec.task, val_fraction=0.2)),
             "hparams": spec.with_(hparams={"per_channel": True})}
    for field, other in cases.items():
        assert [m.split(" ")[0] for m in spec_mismatch(tuned, other)] == [field]
        with pytest.raises(ValueError, match=f"tuned.json was tuned for another run .*{field}") as err:
            apply_tuned(other, tuned)
        assert "\n" not in str(err.value)


def test_format_1_file_is_refused_with_a_refreeze_hint(tmp_path):
    path = tmp_path / "lsq" / "optdigits__dann_digits__w4a4.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 1, "method": "lsq", "task": "optdigits", "arch": "dann_digits",
                                "w_bits": 4, "a_bits": 4, "hparams": {}, "recipe_overrides": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="format 1 does not record the run spec.*re-freeze"):
        load_tuned("lsq", "optdigits", "dann_digits", 4, 4, root=tmp_path)


def test_stored_base_spec_refuses_a_rerun_with_another_spec(tmp_path):
    _, spec = _matrix(optioned_grid(tmp_path))
    options = TuneOptions(base=spec, space=search_space("lsq"), output=tmp_path / "out")
    prepare_study(options)
    prepare_study(options)  # the same base: the study continues
    other = TuneOptions(base=spec.with_(arch_options={}), space=options.space, output=options.output)
    with pytest.raises(ValueError, match=r"exists with other settings \(base.arch_options, base.init_from\)"):
        prepare_study(other)


def test_cli_cell_errors_exit_2_with_one_line(tmp_path, capsys):
    grid = str(optioned_grid(tmp_path))
    out = ["--output", str(tmp_path / "out")]
    cases = {
        "--epochs cannot be combined with --grid": ["--grid", grid, *CELL, "--epochs", "3"],
        "--arch-option cannot be combined": ["--grid", grid, *CELL, "--arch-option", "dropout=0.1"],
        "--bits value '2/2' is not in grid": ["--grid", grid, *CELL[:-1], "2/2"],
        "unknown profile 'fast'": ["--grid", grid, *CELL, "--profile", "fast"],
        "unknown option 'widht' for architecture 'dann_digits'; valid: dropout, pretrained":
            [*CELL, "--arch-option", "widht=2"],
        "invalid architecture option 'dropout'": [*CELL, "--arch-option", "dropout"],
        "invalid layer policy first='x'": [*CELL, "--first-last", "x/fp"],
        "--profile needs --grid": [*CELL, "--profile", "quick"],
        "--study-name '../..' is not a plain name": [*CELL, "--study-name", "../.."],
        "--study-name 'a/b' is not a plain name": [*CELL, "--study-name", "a/b"],
    }
    for message, argv in cases.items():
        assert main(argv + out) == 2, message
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_grid_cell_picks_the_task_and_says_when_it_cannot():
    spec = grid_cell_spec("multidomain", "quick", "alignq", "office31/amazon", "office31/webcam", "resnet50",
                          "4/4")
    assert spec.arch_options == {"pretrained": "imagenet"} and spec.task.protocol == "dann"
    assert spec.fp_recipe is not None and spec.recipe.batch_size == 32
    with pytest.raises(ValueError, match="'office31/amazon' with arch 'resnet50' is ambiguous in grid "
                                         "'multidomain'; valid: office31/amazon->office31/dslr"):
        grid_cell_spec("multidomain", "quick", "alignq", "office31/amazon", None, "resnet50", "4/4")
