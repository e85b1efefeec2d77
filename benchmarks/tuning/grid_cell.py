"""The base run of a study taken from a grid: the very spec ``run_matrix.py`` would run for one cell, so
the values a study finds fit the matrix by construction (``frozen.spec_mismatch`` finds nothing)."""
from __future__ import annotations

from benchmarks.matrix.expand import Filters, expand
from benchmarks.matrix.grids import load_grid
from benchmarks.run.labels import task_key
from benchmarks.run.spec import RunSpec


def grid_cell_spec(grid_name: str, profile: str, method: str, dataset: str, target: str | None, arch: str,
                   bits: str, seed: int | None = None) -> RunSpec:
    """The matrix run of (method, task, arch, bits) in grid ``grid_name`` (a name or a YAML path) under
    ``profile``; ``seed`` None takes the grid's first seed. ``bits`` is spelt as in the grid (``4/4``) and is
    ignored for ``fp``. Raises a one-line ValueError for a value the grid does not have."""
    grid = load_grid(grid_name)
    task = task_key(dataset, target)
    seed = grid.seeds[0] if seed is None else seed
    filters = Filters(methods=(method,), datasets=(task,), archs=(arch,),
                      bits=None if method == "fp" else (bits,), seeds=(seed,))
    cells = [spec for spec in expand(grid, profile, filters) if spec.method == method]
    cells = [spec for spec in cells if spec.task.label == task] or cells  # 'mnist' beside 'mnist->mnistm'
    labels = sorted({spec.task.label for spec in cells})
    if len(labels) != 1:  # --dataset alone matched several tasks (or the arch is not one of the task's)
        valid = sorted({t.task.label for t in grid.tasks if arch in t.archs})
        raise ValueError(f"task {task!r} with arch {arch!r} is {'ambiguous' if labels else 'not'} in grid "
                         f"{grid.name!r}; valid: {', '.join(valid) or 'none'} (--dataset [--target])")
    return cells[0]
