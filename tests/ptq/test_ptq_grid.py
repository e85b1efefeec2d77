"""PTQ runs in a grid: each one's parent is the FP run of its task/arch/seed, it carries that FP recipe, the
``quick`` profile reduces its iterations while ``full`` keeps the published defaults, and ``--dry-run`` lists
them."""
from __future__ import annotations

from benchmarks.matrix.expand import expand
from benchmarks.matrix.grids import GridError, load_grid, parse_grid
from benchmarks.run_matrix import main
from methods import get_method

PTQ_METHODS = {"rtn", "adaround", "brecq", "qdrop", "ttaq"}


def test_ptq_runs_share_the_fp_parents():
    grid = load_grid("ptq")
    specs = expand(grid, "quick")
    fp = {s.run_id: s for s in specs if s.method == "fp"}
    ptq = [s for s in specs if s.method in PTQ_METHODS]
    assert len(ptq) == len(PTQ_METHODS) * len(grid.bits) * 2 and len(fp) == 2  # two archs, one seed
    for spec in ptq:
        parent = spec.parent()
        assert parent is not None and parent.run_id in fp and spec.recipe == parent.recipe
    brecq = next(s for s in ptq if s.method == "brecq")
    assert brecq.hparams == {"iters": 500, "iters_act": 200}
    full = next(s for s in expand(grid, "full") if s.method == "brecq")
    assert full.hparams == {} and get_method("brecq", **full.hparams).hparams["iters"] == 20000


def test_profile_hparams_are_validated():
    data = {"name": "g", "methods": ["rtn"], "bits": ["4/4"], "seeds": [0],
            "tasks": [{"dataset": "optdigits", "archs": ["dann_digits"], "recipe": "r"}],
            "recipes": {"r": {"quick": {"fp": {"epochs": 1}, "qat": {"epochs": 1}}}},
            "profile_hparams": {"fast": {"rtn": {}}}}
    try:
        parse_grid(data)
    except GridError as err:
        assert "profile_hparams" in str(err) and "full, quick" in str(err)
    else:
        raise AssertionError("an unknown profile in profile_hparams was accepted")


def test_dry_run_lists_the_ptq_runs(tmp_path, capsys):
    assert main(["--grid", "ptq", "--profile", "quick", "--dry-run", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for method in PTQ_METHODS:
        assert f" {method} " in out
    assert "W2/A4" in out and "W3/A3" in out
