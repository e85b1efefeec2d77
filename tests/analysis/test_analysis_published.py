"""Published numbers: every row has a source, AlignQ's cells are in the paper text, matching is exact."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.collect import collect_runs, make_row
from analysis.published import canonical_dataset, load_published, ours_vs_published
from benchmarks.run.result import ResultRecord
from tests.analysis.fixtures import ARCH, make_result, make_spec, make_sweep, run_id_of

PAPER = Path(__file__).resolve().parents[3] / "shared/papers/alignq-paper.txt"
# How a CSV method is spelled in the paper's row
STEM = {"AlignQ": "AlignQ (Ours)", "Choi et al.": "Choi", "Ours (CDF + ADMM)": "CDF + ADMM",
        "Ours (CDF only)": "CDF only", "Ours (Best of all)": "Best of all", "Ours (ADMM only)": "ADMM only"}


@pytest.fixture(scope="module")
def published():
    return load_published()


@pytest.fixture(scope="module")
def paper_tables() -> dict[str, list[str]]:
    """Lines of each 'Table N.' block of the paper text (up to the next table caption)."""
    if not PAPER.is_file():
        pytest.skip(f"paper text not found at {PAPER} (needs ../shared beside the repo)")
    blocks: dict[str, list[str]] = {}
    current = None
    for line in PAPER.read_text().splitlines():
        match = re.match(r"^Table (\d)\.", line)
        if match:
            current = f"Table {match.group(1)}"
            blocks[current] = []
        elif current:
            blocks[current].append(line)
    return blocks


def _values_in_row(lines: list[str], stem: str) -> list[list[str]]:
    """Per line that names the method: the cells after the method name (tab-separated)."""
    out = []
    for line in lines:
        cells = [c.strip() for c in line.split("\t")]
        hits = [i for i, c in enumerate(cells) if stem in c]
        if hits:
            out.append(cells[hits[0] + 1:])
    return out


def test_every_row_has_a_source(published):
    assert len(published) > 400
    assert (published["source"].str.strip() != "").all()
    tags = "PAPER|PAPER-GARBLED-ROW|CODE|SECONDARY|SECONDARY-CONFIRMED|RECALLED-VERIFY"
    assert published["source"].str.contains(rf"\[(?:{tags})\]$").all()
    reported = published[published["status"] == "reported"]
    assert reported["value"].notna().all() and reported["value"].between(0, 100).all()


@pytest.mark.parametrize("table, task_or_arch, method, bits, value", [
    ("Table 4", "MNIST→MNIST-M", "AlignQ", 4, 96.1),
    ("Table 5", "Avg", "AlignQ", 4, 69.5),
    ("Table 2", "resnet20", "LSQ", 4, 91.7),
])
def test_named_cells(published, paper_tables, table, task_or_arch, method, bits, value):
    rows = published[(published["table"] == table) & (published["method"] == method)
                     & (published["w_bits"] == str(bits))
                     & ((published["task_label"] == task_or_arch) | (published["arch"] == task_or_arch))
                     & published["paper"].str.startswith("AlignQ")]
    assert list(rows["value"]) == [value]
    assert any(str(value) in cells for cells in _values_in_row(paper_tables[table], STEM.get(method, method)))


def test_every_alignq_paper_value_is_in_its_table_row(published, paper_tables):
    """Clean rows: the value sits at its column in a row naming the method; garbled rows: in the block."""
    alignq = published[published["paper"].str.startswith("AlignQ")]
    tasks = {"Table 4": ["MNIST→MNIST-M", "MNIST→SVHN", "SynDigits→MNIST"],
             "Table 5": ["A→W", "D→W", "W→D", "A→D", "D→A", "W→A", "Avg"]}
    tasks["Table 7"] = tasks["Table 5"]
    for rec in alignq.itertuples():
        lines = paper_tables[rec.table]
        text = "*" if rec.status == "fails" else rec.value_text
        if "GARBLED" in rec.source:
            assert any(text in re.split(r"\s+", line) for line in lines), rec
            continue
        rows = _values_in_row(lines, STEM.get(rec.method, rec.method))
        if rec.table in tasks:  # one column per task
            pos = tasks[rec.table].index(rec.task_label)
            assert any(len(r) > pos and r[pos] == text for r in rows), rec
        else:  # "2/2  v  4/4  v"
            bits = f"{rec.w_bits}/{rec.a_bits}"
            assert any(bits in r and r.index(bits) + 1 < len(r) and r[r.index(bits) + 1] == text
                       for r in rows), rec


def test_canonical_names():
    assert canonical_dataset("syndigits-synth-lt-r100") is None  # synthetic: never matched
    assert canonical_dataset("mnistm-synth") is None
    assert canonical_dataset("cifar10-lt-r100") == "cifar10-lt-r100"
    assert canonical_dataset("MNIST_M") == "mnistm"


def test_ours_vs_published_matches_exact_tasks_only(tmp_path, published):
    runs, _ = collect_runs(make_sweep(tmp_path))
    table, caption = ours_vs_published(runs, published)
    assert table.empty and "NOT the published datasets" in caption
    real_task = ("mnist", "mnistm", "dann")
    extra = []
    for seed, top1 in enumerate([95.0, 97.0]):
        spec = make_spec(real_task, "alignq", 4, seed)
        assert spec["arch"] == ARCH
        rid = run_id_of(real_task, "alignq", 4, seed)
        record = ResultRecord.from_dict(make_result(rid, spec, top1))
        extra.append(make_row(rid, "done", {"spec": spec}, record, "test"))
    import pandas as pd

    table, caption = ours_vs_published(pd.concat([runs, pd.DataFrame(extra)], ignore_index=True), published)
    assert len(table) == 1
    rec = table.iloc[0]
    assert (rec["task"], rec["W/A"], rec["published"]) == ("MNIST→MNIST-M", "W4/A4", "96.1")
    # these rows have no metrics.jsonl: the rules fall back to result.json's top1_last and top1_best
    assert rec["ours (last)"] == "96.0 ± 12.7 (2)" and rec["ours (oracle)"] == "97.0 ± 12.7 (2)"
    assert rec["published in our 95% CI (last)"] == "yes" and rec["published in our 95% CI (oracle)"] == "yes"
    assert rec["Δ ours−published"] == "-0.1" and "Table 4 [PAPER]" in rec["source"]


def _real_rows(values: list[float]) -> list[dict]:
    """Done AlignQ W4/A4 rows on the real MNIST→MNIST-M task (published: 96.1, AlignQ Table 4)."""
    task, rows = ("mnist", "mnistm", "dann"), []
    for seed, top1 in enumerate(values):
        spec = make_spec(task, "alignq", 4, seed)
        rid = run_id_of(task, "alignq", 4, seed)
        record = ResultRecord.from_dict(make_result(rid, spec, top1))
        rows.append(make_row(rid, "done", {"spec": spec}, record, "test"))
    return rows


def test_published_outside_our_interval_and_single_runs(published):
    import pandas as pd

    table, caption = ours_vs_published(pd.DataFrame(_real_rows([90.0, 90.5, 91.0])), published, "val")
    rec = table.iloc[0]
    # val falls back to result.json's top1_val_selected = top1 - 0.5: 90.0 ± t(2) · 0.5 / √3 = ± 1.2
    assert rec["ours (val)"] == "90.0 ± 1.2 (3)" and rec["published in our 95% CI (val)"] == "no"
    assert rec["ours (oracle)"] == "91.5 ± 1.2 (3)" and rec["published in our 95% CI (oracle)"] == "no"
    assert "whether the published number lies inside" in caption and "rule `val`" in caption
    table, _ = ours_vs_published(pd.DataFrame(_real_rows([96.0])), published, "oracle")
    rec = table.iloc[0]
    assert "ours (last)" not in table.columns  # the oracle rule is shown once
    assert rec["ours (oracle)"] == "97.0 (1)"
    assert rec["published in our 95% CI (oracle)"] == "n < 2: no interval"
