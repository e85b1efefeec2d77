"""Collection, paper tables and coverage on synthetic run dirs whose numbers are worked out by hand."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.collect import collect_runs, write_runs_csv
from analysis.coverage import coverage_table
from analysis.render import to_csv, to_latex, to_markdown
from analysis.tables import all_tables, longtail_table, shift_tables, standard_table, sweep_tables
from tests.analysis.fixtures import LT_TASK, POISON, RUNS, make_sweep, run_id_of, write_run

LT_GROUP = "syndigits-synth-lt-r100→mnistm-synth · dann_digits"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return collect_runs(make_sweep(tmp_path_factory.mktemp("sweep")))[0]


def _row(table, label, block):
    return next(r for r in table.rows if r.label == label and r.block == block)


def test_collect_statuses_and_columns(runs):
    assert len(runs) == len(RUNS)
    assert runs["status"].value_counts().to_dict() == {"done": 25, "incomplete": 1, "failed": 1}
    rec = runs[runs["run_id"] == run_id_of(LT_TASK, "lsq", 4, 0)].iloc[0]
    assert (rec["dataset"], rec["target"], rec["protocol"]) == LT_TASK and rec["arch"] == "dann_digits"
    assert (rec["bits_label"], rec["seed"]) == ("W4/A4", 0)
    assert (rec["first_layer"], rec["last_layer"], rec["policy"]) == ("8bit", "8bit", "8bit/8bit")
    assert rec["lt_ratio"] == 100 and rec["synthetic"] and rec["grid"] == "fixture"
    assert rec["top1_last"] == 70.0 and rec["per_domain_acc"]["mnistm-synth"] == 70.0
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert failed["error"] == "RuntimeError: boom" and math.isnan(failed["top1_last"])


def test_incomplete_run_never_in_a_mean(runs):
    incomplete = runs[runs["status"] == "incomplete"].iloc[0]
    assert math.isnan(incomplete["top1_last"])  # its result.json (poison value) is not read without `done`
    for table in all_tables(runs):
        for cell in table.cells.values():
            assert cell.n == 0 or cell.mean != POISON


def test_longtail_cells_by_hand(runs):
    t = longtail_table(runs)
    fp, lsq4, al4 = _row(t, "fp", "FP"), _row(t, "lsq", "W4/A4"), _row(t, "alignq", "W4/A4")
    lsq2, al2 = _row(t, "lsq", "W2/A2"), _row(t, "alignq", "W2/A2")
    top1, delta = f"{LT_GROUP}|top1", f"{LT_GROUP}|delta"
    assert [r.key for r in t.rows] == [fp.key, lsq2.key, al2.key, lsq4.key, al4.key]  # FP first, then W/A
    c = t.cell(lsq4.key, top1)
    assert (c.mean, c.n) == (72.0, 3) and c.std == pytest.approx(math.sqrt(7.0))  # 70, 71, 75
    c = t.cell(al4.key, top1)  # seeds 0, 1 done; seed 2 incomplete
    assert (c.mean, c.n) == (77.0, 2) and c.std == pytest.approx(math.sqrt(2.0))
    c = t.cell(lsq2.key, top1)  # seed 0 done, seed 1 failed, seed 2 missing
    assert (c.mean, c.n) == (50.0, 1) and math.isnan(c.std)
    assert t.cell(al4.key, delta).mean == pytest.approx(77.0 - 82.0)
    assert t.cell(lsq2.key, delta).mean == pytest.approx(50.0 - 82.0)
    assert t.cell(al4.key, f"{LT_GROUP}|tail").mean == 67.0
    # AlignQ beats LSQ on both paired seeds (+6, +7: 95 % interval [0.15, 12.85]): bold, though the cells'
    # own intervals overlap; pairing by seed and FP parent removes the seed-to-seed noise
    assert t.cell(al4.key, top1).best and not t.cell(lsq4.key, top1).best
    # at W2/A2 the rival is a single run: nothing separates them, the leader is only tied; n = 1 never marked
    assert t.cell(al2.key, top1).tie and not t.cell(al2.key, top1).best
    assert not (t.cell(lsq2.key, top1).best or t.cell(lsq2.key, top1).tie)
    assert not (t.cell(fp.key, top1).best or t.cell(fp.key, top1).tie)  # FP is the reference, never marked


def test_markdown_cells(runs):
    md = to_markdown(longtail_table(runs))
    # ± = t(0.975, 2) · 2 / √3 = 4.97 for the FP row (82, 80, 84); t(0.975, 1) · √2 / √2 = 12.7 for n = 2
    assert "| FP | fp | 82.0 ± 5.0 (3) | ref | 87.0 ± 5.0 (3) | 82.0 ± 5.0 (3) | 72.0 ± 5.0 (3) |" in md
    # layer policies differ inside each W/A block: every compared cell carries its setup letter
    assert "| W2/A2 | lsq | 50.0 (1)ᵃ | -32.0 | 55.0 (1)ᵃ | 50.0 (1)ᵃ | 40.0 (1)ᵃ |" in md
    assert "|  | alignq | 61.0 ± 2.5 (3) ≈ᵇ | -21.0 |" in md
    assert "|  | alignq | **77.0 ± 12.7 (2)ᵇ** | -5.0 |" in md
    assert "half-width of the 95 % t-interval of the mean over seeds" in md
    assert "a = 8bit/8bit → W8A8/W8A8, default hparams; b = same/fp → same/fp, default hparams" in md
    policies = "fp fp/fp (fp/fp); lsq 8bit/8bit (W8A8/W8A8); alignq same/fp (W2A2/fp, W4A4/fp)"
    assert f"Layer policy (first/last): {policies}." in md  # requested, then effective (layer reports)
    assert "not the published datasets" in md


def test_shift_avg_and_worst(runs):
    (t,) = shift_tables(runs)
    tasks = ["mnist-synth→mnistm-synth", "syndigits-synth-lt-r100→mnistm-synth"]
    assert [c.label for c in t.columns] == [*tasks, "Avg", "Δ Avg", "Worst dom."]
    fp, lsq4, al4 = _row(t, "fp", "FP"), _row(t, "lsq", "W4/A4"), _row(t, "alignq", "W4/A4")
    c = t.cell(fp.key, "avg")  # per seed (80+90)/2, (82+91)/2, (84+92)/2
    assert (c.mean, c.n) == (86.5, 3) and c.std == pytest.approx(1.5)
    c = t.cell(lsq4.key, "avg")  # 77.5, 78.5, 81.0
    assert c.mean == pytest.approx(79.0) and c.std == pytest.approx(math.sqrt(3.25))
    c = t.cell(al4.key, "avg")  # seed 2 did not finish the LT task: only seeds 0, 1
    assert (c.mean, c.n) == (82.5, 2)
    assert t.cell(al4.key, "delta_avg").mean == pytest.approx(82.5 - 86.5)
    assert t.cell(lsq4.key, "worst").mean == pytest.approx(72.0)  # min over tasks of the target accuracy
    assert t.cell(_row(t, "lsq", "W2/A2").key, "avg").n == 0  # no W2/A2 run on the second task
    assert t.cell(al4.key, "mnist-synth→mnistm-synth").std == 0.0
    # paired differences 3, 2, 1: interval [-0.5, 4.5] holds 0, so the two are tied, not bold
    assert "|  | alignq | 88.0 ± 0.0 (3) ≈ᵇ |" in to_markdown(t)


def test_standard_and_sweep(runs):
    t = standard_table(runs)
    fp, lsq = _row(t, "fp", "FP"), _row(t, "lsq", "W4/A4")
    group = "syndigits-synth · dann_digits"
    assert t.cell(fp.key, f"{group}|top1").mean == 96.0
    assert t.cell(lsq.key, f"{group}|delta").mean == pytest.approx(-2.5)
    assert not t.cell(lsq.key, f"{group}|top1").best  # a single quantized row has nothing to beat
    sweeps = {s.name: s for s in sweep_tables(runs)}
    s = sweeps["sweep_syndigits-synth-lt-r100-to-mnistm-synth_dann-digits"]
    assert [c.label for c in s.columns] == ["FP", "W2/A2", "W4/A4"]
    assert [r.label for r in s.rows] == ["lsq", "alignq"]
    assert s.cell(s.rows[0].key, "fp").mean == 82.0 and s.cell(s.rows[1].key, "W2/A2").mean == 61.0


def test_selection_rules(runs):
    """The fixture histories put the best test epoch at +1 and the best validation epoch at -0.5."""
    for selection, offset in (("last", 0.0), ("oracle", 1.0), ("val", -0.5), ("top1_best", 1.0)):
        t = longtail_table(runs, selection)
        assert t.cell(_row(t, "lsq", "W4/A4").key, f"{LT_GROUP}|top1").mean == pytest.approx(72.0 + offset)
        word = {"last": "last epoch", "val": "validation"}.get(selection, "oracle")
        assert word in t.caption and "(rule `" in t.caption


def test_coverage(runs):
    cov = coverage_table(runs, expected_seeds=[0, 1, 2]).set_index(["task", "method", "W/A"])
    lsq2 = cov.loc[(LT_TASK[0] + "→" + LT_TASK[1], "lsq", "W2/A2")]
    assert (lsq2["done"], lsq2["failed"], lsq2["incomplete"], lsq2["missing"]) == (1, 1, 0, 1)
    assert lsq2["missing seeds"] == "2"
    al4 = cov.loc[(LT_TASK[0] + "→" + LT_TASK[1], "alignq", "W4/A4")]
    assert (al4["done"], al4["incomplete"], al4["missing"]) == (2, 1, 0)
    absent = cov.loc[("mnist-synth→mnistm-synth", "lsq", "W2/A2")]  # configuration never launched there
    assert (absent["done"], absent["missing"], absent["note"]) == (0, 3, "no run")
    assert len(cov) == 12


def test_output_is_deterministic(runs, tmp_path):
    first = [(to_markdown(t), to_latex(t), to_csv(t)) for t in all_tables(runs)]
    shuffled = runs.sample(frac=1.0, random_state=1)
    assert [(to_markdown(t), to_latex(t), to_csv(t)) for t in all_tables(shuffled)] == first
    latex = to_latex(longtail_table(runs))
    assert r"\toprule" in latex and r"\textbf{77.0 $\pm$ 12.7 (2)\textsuperscript{b}}" in latex
    assert r"61.0 $\pm$ 2.5 (3) $\approx$\textsuperscript{b}" in latex and "$-5.0$" in latex
    shift_latex = to_latex(shift_tables(runs)[0])
    # an empty Δ is not math
    assert r"W2/A2 & lsq & -- & 50.0 (1)\textsuperscript{a} & -- & -- & -- \\" in shift_latex
    write_runs_csv(runs, tmp_path / "runs.csv")
    assert json.loads(pd.read_csv(tmp_path / "runs.csv")["per_domain_acc"][0])


def test_missing_keys_never_crash(tmp_path):
    """An old record with only the minimum (no metrics beyond top-1, no layer policy) still collects."""
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"run_id": "old", "spec": {"method": "lsq"}}))
    (run_dir / "result.json").write_text(json.dumps({"metrics": {"top1_last": 50}}))
    (run_dir / "done").write_text("")
    write_run(tmp_path / "runs", LT_TASK, "fp", 32, 0, 80.0)
    df, info = collect_runs(tmp_path)
    old = df[df["run_id"] == "old"].iloc[0]
    assert old["status"] == "done" and old["bits_label"] == "W32/A32" and old["arch"] == "unknown"
    assert old["policy"] == "default" and pd.isna(old["effective_policy"])
    assert info.n_done == 2
    assert all_tables(df) and coverage_table(df) is not None


def test_mixed_configurations_are_flagged(tmp_path):
    """Two done runs of one cell and seed that differ in hparams: pooled, but the coverage says so."""
    first = write_run(tmp_path / "runs", LT_TASK, "lsq", 4, 0, 70.0)
    other = tmp_path / "runs" / "other"
    other.mkdir()
    for name in ("spec.json", "result.json", "done"):
        record = (first / name).read_text()
        if name != "done":
            data = json.loads(record)
            data["run_id"], data["spec"]["hparams"] = "other", {"lr_scale": 2.0}
            record = json.dumps(data)
        (other / name).write_text(record)
    df, _ = collect_runs(tmp_path)
    note = coverage_table(df)["note"].iloc[0]
    assert "several done runs share a seed" in note and "mixes 2 configurations" in note
    assert df["policy"].tolist() == ["8bit/8bit"] * 2
    assert df["effective_policy"].tolist() == ["W8A8/W8A8"] * 2


RUN_CONTRACT = ("benchmarks.run.labels", "benchmarks.run.rundir", "benchmarks.run.result",
                "benchmarks.run.redact")


def test_analysis_never_imports_training_code():
    """analysis/ reads records only: of benchmarks/ it imports the torch-free run contract, nothing else."""
    import ast
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "analysis").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.split(".")[0] in ("benchmarks", "methods"):
                    assert name in RUN_CONTRACT, f"{path.name} imports {name}"


def test_analysis_and_the_run_contract_load_without_torch():
    import subprocess
    import sys

    code = ("import sys; import analysis.report, analysis.figures; import benchmarks.run.rundir, "
            "benchmarks.run.labels, benchmarks.run.result; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_copied_run_directory_is_not_counted_twice(tmp_path, caplog):
    """A run dir copied under another name (its spec.json names the original) is ignored with a warning."""
    import shutil

    original = write_run(tmp_path / "runs", LT_TASK, "lsq", 4, 0, 70.0)
    shutil.copytree(original, original.parent / "copy-of-it")
    df, info = collect_runs(tmp_path)
    assert len(df) == 1 and info.unreadable == [str(original.parent / "copy-of-it")]
    assert "copied or renamed" in caplog.text
