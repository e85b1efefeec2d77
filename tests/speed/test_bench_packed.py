"""Plumbing of ``bench_speed.py --packed``: N concurrent training processes and one alone, on CPU with a tiny
configuration. No speed is asserted (the machine is shared); only the printed fields and positive rates."""
from __future__ import annotations

import csv
import re

from benchmarks import bench_speed


def test_packed_tiny_config_prints_gain_device_and_command(tmp_path, capsys):
    out = tmp_path / "packed.csv"
    code = bench_speed.main(["--packed", "2", "--methods", "lsq", "--arch", "resnet20", "--batch-size", "4",
                             "--input-size", "8", "--steps", "3", "--warmup", "1", "--pool", "2",
                             "--device", "cpu", "--no-pipeline", "--no-overhead", "--no-memory",
                             "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"packed: 2 concurrent runs of lsq on cpu ", printed), printed
    single = re.search(r"single run: ([0-9.]+) images/s", printed)
    aggregate = re.search(r"aggregate of 2: ([0-9.]+) images/s", printed)
    gain = re.search(r"gain \(aggregate / single\): ([0-9.]+)", printed)
    assert single and aggregate and gain, printed
    assert float(single[1]) > 0 and float(aggregate[1]) > 0 and float(gain[1]) > 0
    assert "command: " in printed and "--packed 2" in printed
    rows = [r for r in csv.DictReader(out.open()) if r["section"] == "packed"]
    assert len(rows) == 1 and rows[0]["runs"] == "2" and float(rows[0]["aggregate_img_s"]) > 0


def test_packed_refuses_the_peer():
    assert bench_speed.main(["--packed", "2", "--methods", bench_speed.PEER, "--device", "cpu"]) != 0
