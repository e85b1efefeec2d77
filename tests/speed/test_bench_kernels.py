"""Smoke test of the kernel micro-benchmark: every kernel row is printed; bad input is a one-line usage error.
No timing is asserted."""
from __future__ import annotations

import pytest

from benchmarks import bench_kernels


def test_bench_kernels_prints_every_kernel(capsys):
    assert bench_kernels.main(["--shape", "4,3,5,5", "--repeats", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    expected = [(group, variant) for group, variant, _ in bench_kernels.kernels(75)]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == expected
    assert {variant for _, variant in expected} >= {"fused", "reference", "opt-in native_bn"}


@pytest.mark.parametrize("shape", ["4,3,5", "4,x,5,5", "4,0,5,5"])
def test_bad_shape_is_a_usage_error(shape, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_kernels.main(["--shape", shape])
    assert exit_info.value.code == 2
    assert "invalid --shape" in capsys.readouterr().err
