"""Smoke test of the speed benchmark on a tiny configuration: it runs, prints its table and writes its CSV.

No timing is asserted (timings depend on the machine and its load); only the shape of the output.
"""

from __future__ import annotations

import csv

import pytest
import torch

from benchmarks import bench_speed
from benchmarks.models import build_model
from benchmarks.speed.peer_fakequant import fusion_groups, prepare_peer


def test_bench_speed_tiny_config_writes_csv(tmp_path, capsys):
    out = tmp_path / "speed.csv"
    code = bench_speed.main(
        [
            "--arch",
            "resnet20",
            "--bits",
            "4/4",
            "--batch-size",
            "4",
            "--input-size",
            "8",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--pool",
            "2",
            "--device",
            "cpu",
            "--methods",
            f"fp,lsq,alignq:admm=False,{bench_speed.PEER}",
            "--pipeline-images",
            "64",
            "--overhead-steps",
            "2",
            "--no-memory",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    steps = [r for r in rows if r["section"] == "step"]
    assert [r["method"] for r in steps] == ["fp", "lsq", "alignq:admm=False", bench_speed.PEER]
    for r in steps:
        assert r["error"] == ""
        assert float(r["train_ms"]) > 0 and float(r["fp_train_ms"]) > 0 and float(r["train_ratio"]) > 0
        assert float(r["eval_ms"]) > 0 and float(r["train_img_s"]) > 0
    sections = {r["section"] for r in rows}
    assert {"pipeline", "overhead"} <= sections
    assert all(r["error"] == "" for r in rows if r["section"] == "overhead")
    table = capsys.readouterr().out
    assert "| method | train ms |" in table and "lsq" in table


def test_bench_speed_cpu_memory_child(tmp_path):
    out = tmp_path / "speed.csv"
    assert (
        bench_speed.main(
            [
                "--batch-size",
                "4",
                "--input-size",
                "8",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--pool",
                "1",
                "--device",
                "cpu",
                "--methods",
                "dorefa",
                "--no-pipeline",
                "--no-overhead",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (row,) = list(csv.DictReader(out.open()))
    assert row["error"] == "" and float(row["peak_mb"]) > 0 and "peak-RSS" in row["memory_kind"]


def test_unknown_method_is_a_one_line_error(capsys):
    assert bench_speed.main(["--methods", "nope", "--device", "cpu"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_method_spec_parsing():
    assert bench_speed.parse_method_spec("alignq:admm=False:mu=0.1") == ("alignq", {"admm": False, "mu": 0.1})
    assert bench_speed.expand_methods("all")[-1] == bench_speed.PEER
    assert bench_speed.expand_methods("fp, lsq") == ["fp", "lsq"]


def test_peer_fakequant_fuses_and_fake_quantizes_resnet20():
    net = build_model("resnet20", 10)
    groups = fusion_groups(net)
    assert ["conv1", "bn1", "relu"] in groups and [
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.relu1",
    ] in groups
    assert ["layer2.0.shortcut.0", "layer2.0.shortcut.1"] in groups
    prepare_peer(net, bits=4)
    fq = [m for m in net.modules() if isinstance(m, torch.ao.quantization.FakeQuantizeBase)]
    assert fq and all(m.quant_max - m.quant_min == 15 for m in fq)
    x = torch.randn(2, 3, 8, 8)
    loss = net(x).sum()
    loss.backward()
    assert net.fc.weight.grad is not None


@pytest.mark.parametrize("spec", ["fp", "lsq", "dorefa"])
def test_benchmark_step_is_the_methods_training_step(spec):
    opts = bench_speed.Options(batch_size=4, input_size=8, pool=1)
    batches = bench_speed.batch_pool(opts, torch.device("cpu"))
    setup = bench_speed.build_setup(spec, opts, torch.device("cpu"), batches[0][0])
    before = [p.detach().clone() for p in setup.model.parameters()]
    loss = bench_speed.train_step(setup, *batches[0])
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, setup.model.parameters()))


def test_vs_eager_needs_compile(capsys):
    assert bench_speed.main(["--vs-eager", "--device", "cpu", "--methods", "lsq"]) == 2
    assert capsys.readouterr().err.strip().endswith("valid: with --compile")


@pytest.mark.slow  # dynamo traces three models twice: about 2 min on the loaded 2-core CPU
def test_compiled_section_reports_ratios_speedup_and_capture(tmp_path, capsys, monkeypatch):
    """The plumbing of ``--compile --vs-eager`` on a tiny model; inductor's code generation is swapped for
    AOT autograd with eager kernels (the same graphs, seconds instead of minutes)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="aot_eager", dynamic=False))
    out = tmp_path / "compiled.csv"
    code = bench_speed.main(["--compile", "--vs-eager", "--arch", "dann_digits", "--input-size", "28",
                             "--batch-size", "4", "--steps", "2", "--warmup", "1", "--pool", "2", "--device",
                             "cpu", "--methods", "lsq,alignq", "--no-pipeline", "--no-overhead", "--out",
                             str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "### Compiled steps" in table and "error" not in table
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["lsq", "alignq"]
    for r in rows:
        assert r["section"] == "compiled" and float(r["train_ratio"]) > 0 and float(r["compile_speedup"]) > 0
        assert r["cuda_graphs"].startswith("no: CUDA graphs need a CUDA device")
    assert "ADMM observers" in rows[1]["cuda_graphs"]  # AlignQ's default: its ADMM terms block capture
