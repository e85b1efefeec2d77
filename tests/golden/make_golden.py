"""Regenerate the golden run records and the tables expected from them (run deliberately, review the diff).

    .venv/bin/python tests/golden/make_golden.py

Trains the ``smoke-golden`` grid (the smoke grid with seeds 0-3: real UCI optdigits, FP/LSQ/DoReFa at W4/A4)
through ``benchmarks.run.trainer.run``, the code path every launcher uses, with three deliberate defects in
seed 3:

- DoReFa seed 3 is started before its FP parent exists, so it fails for real and leaves ``failed.json``;
- LSQ seed 3 is stopped after epoch 1 of 2 (``max_epochs=1``), an incomplete run as a killed job leaves it;
- FP seed 3 finishes, so the FP cell has four seeds and the two QAT cells three done runs each.

The run records are copied without weights, checkpoints and heartbeats (analysis reads none of them) into
``tests/golden/smoke-golden/runs/``, the report's tables into ``tests/golden/smoke-golden/expected/``, and
what bit-exact retraining depends on (torch version, CPU kernel fingerprint) into ``machine.json``.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402

from benchmarks.matrix.expand import expand  # noqa: E402
from benchmarks.matrix.grids import load_grid  # noqa: E402
from benchmarks.run.environment import cpu_kernel_fingerprint  # noqa: E402
from benchmarks.run.rundir import RunDir  # noqa: E402
from benchmarks.run.trainer import run  # noqa: E402

GRID = HERE / "smoke-golden.yaml"
TARGET = HERE / "smoke-golden"
KEEP = ("spec.json", "metrics.jsonl", "result.json", "failed.json", "done")


def _quiet(_: str) -> None:
    pass


def train_records(output: Path) -> None:
    specs = expand(load_grid(str(GRID)), "full")
    defective = {(s.method, s.seed): s for s in specs if s.seed == 3}
    try:
        run(defective[("dorefa", 3)], output, grid="smoke-golden", log=_quiet)
        raise RuntimeError("DoReFa seed 3 was meant to fail without its FP parent")
    except FileNotFoundError:
        pass
    for spec in specs:
        if spec.seed == 3 and spec.method == "lsq":
            assert run(spec, output, grid="smoke-golden", max_epochs=1, log=_quiet) is None
        elif not (spec.seed == 3 and spec.method == "dorefa"):
            run(spec, output, grid="smoke-golden", log=_quiet)


def copy_records(output: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    for directory in sorted((output / "runs").iterdir()):
        kept = target / "runs" / directory.name
        kept.mkdir(parents=True)
        for name in KEEP:
            if (directory / name).exists():
                shutil.copy2(directory / name, kept / name)


def write_expected(target: Path) -> None:
    from analysis.collect import collect_runs
    from analysis.report import make_report

    runs, _ = collect_runs(target / "runs")
    expected = target / "expected"
    make_report(runs, runs.iloc[:0], expected, source="tests/golden/smoke-golden/runs", figure_formats=())
    for extra in ("runs.csv", "index.md"):  # absolute paths and the source line: not golden material
        (expected / extra).unlink()


def main() -> int:
    torch.set_num_threads(1)  # the thread count the tests use
    with tempfile.TemporaryDirectory() as tmp:
        train_records(Path(tmp))
        copy_records(Path(tmp), TARGET)
    write_expected(TARGET)
    # what bit-exact retraining needs to match (tests/run/test_results_unchanged.py)
    (TARGET / "machine.json").write_text(json.dumps({
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_kernels": cpu_kernel_fingerprint(), "torch_threads": 1}, indent=1) + "\n")
    states = {d.name: RunDir(d).state().value for d in sorted((TARGET / "runs").iterdir())}
    print(f"{len(states)} run records in {TARGET}: " + ", ".join(sorted(set(states.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
