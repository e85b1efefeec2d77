"""A grid's test-time adaptation runs: every TTA method of the grid's ``tta`` section on each quantized run of
one of its ``parents`` methods, with the profile's stream (a task may override stream keys, e.g. its
source)."""
from __future__ import annotations

from benchmarks.data.streams import StreamSpec
from benchmarks.matrix.grids import Grid, GridError, GridTask
from benchmarks.run.spec import RunSpec
from benchmarks.run.tta_spec import TtaSpec
from methods.tta import get_tta


def tta_specs(grid: Grid, gtask: GridTask, parent: RunSpec, profile: str) -> list[TtaSpec]:
    tta = grid.tta
    if tta is None or parent.method not in tta.parents:
        return []
    if profile not in tta.streams:
        raise GridError(f"grid {grid.name!r} tta streams have no profile {profile!r}; valid: "
                        f"{', '.join(tta.streams)}")
    try:
        stream = StreamSpec.from_dict({**tta.streams[profile], **gtask.stream})
    except (TypeError, ValueError) as err:
        raise GridError(f"grid {grid.name!r}: {err}") from None
    return [TtaSpec(parent, method, stream, dict(tta.hparams.get(method, {}))) for method in tta.methods]


def validate_tta_spec(spec: TtaSpec) -> None:
    """A one-line ValueError for an unknown TTA method or hyper-parameter."""
    get_tta(spec.method, **spec.hparams)
