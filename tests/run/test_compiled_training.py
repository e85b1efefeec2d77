"""Compiled training (``Recipe(compile=True)``) agrees with eager training within a stated tolerance, for
every method: the same FP parent, the same batches, a short QAT run each way (inductor on the CPU).

Compiled kernels fuse and reorder floating-point operations, so values differ from eager in the last bits;
a rounding decision near a quantization boundary can flip, and a few SGD steps amplify that a little. The
tolerance (``docs/speed.md``): per-epoch training loss within 2 % (relative) and final test accuracy
within 3 points. Slow (compiling is minutes on a loaded 2-core CPU): one module-wide FP parent, one epoch pair
per method.
"""
from __future__ import annotations

import pytest

from benchmarks.run.rundir import RunDir
from benchmarks.run.spec import Recipe, RunSpec, TaskSpec
from benchmarks.run.trainer import run

FP = Recipe(epochs=2, batch_size=64, lr=0.05, schedule="cosine", steps_per_epoch=6)
QAT = Recipe(epochs=2, batch_size=64, lr=0.01, schedule="cosine", steps_per_epoch=4)
METHODS = ("fp", "lsq", "dorefa", "alignq", "climbq", "emaq", "emaq-lt")
LOSS_RTOL, ACC_POINTS = 0.02, 3.0


def _quiet(_: str) -> None:
    pass


def _spec(method: str, compile: bool) -> RunSpec:
    task = TaskSpec("optdigits", test_subsample=300)
    if method == "fp":
        return RunSpec(task=task, arch="dann_digits", method="fp", recipe=Recipe(**{**vars(FP),
                                                                                     "compile": compile}))
    return RunSpec(task=task, arch="dann_digits", method=method, recipe=Recipe(**{**vars(QAT),
                                                                                   "compile": compile}),
                   w_bits=4, a_bits=4, fp_recipe=FP)


def test_compile_is_in_the_run_id_only_when_true() -> None:
    eager, compiled = _spec("lsq", False), _spec("lsq", True)
    assert "compile" not in eager.to_dict()["recipe"]  # ids of runs from before the option hold
    assert compiled.to_dict()["recipe"]["compile"] is True and compiled.run_id != eager.run_id
    assert RunSpec.from_dict(compiled.to_dict()).run_id == compiled.run_id
    with pytest.raises(ValueError, match=r"^invalid recipe compile 'yes'; valid: true, false$"):
        Recipe(epochs=1, compile="yes")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled")
    run(_spec("lsq", False).parent(), path, device="cpu", log=_quiet)  # the FP parent every QAT run shares
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_compiled_training_agrees_with_eager(method: str, output) -> None:
    lines: list[str] = []
    eager = run(_spec(method, False), output, device="cpu", log=_quiet)
    compiled = run(_spec(method, True), output, device="cpu", log=lines.append)
    assert eager is not None and compiled is not None
    assert any("compiled features()" in line for line in lines)  # the recipe switched compilation on
    assert _spec(method, True).run_id != _spec(method, False).run_id
    curves = [[row["train_loss"] for row in RunDir.of(output, s.run_id).read_metrics()]
              for s in (_spec(method, False), _spec(method, True))]
    top1 = (eager.metrics.top1_last, compiled.metrics.top1_last)
    print(f"{method}: loss per epoch eager {curves[0]}, compiled {curves[1]}; top-1 eager, compiled {top1}")
    assert curves[1] == pytest.approx(curves[0], rel=LOSS_RTOL), f"{method}: loss per epoch {curves}"
    assert abs(top1[1] - top1[0]) <= ACC_POINTS, f"{method}: top-1 eager, compiled: {top1}"
