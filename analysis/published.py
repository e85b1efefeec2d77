"""Published numbers (``analysis/published/*.csv``) and the "ours vs published" table.

Every CSV row is one number with a ``source`` (paper, table, provenance tag: PAPER, PAPER-GARBLED-ROW,
CODE, SECONDARY, SECONDARY-CONFIRMED, RECALLED-VERIFY). Datasets and archs use our canonical names
(``cifar10``, ``mnist``→``mnistm``, ``office31/amazon``, ``resnet20``, ``dann_digits``; Office-31 DANN rows
use the backbone name ``resnet50``, with the protocol telling DANN from source-only). A run is compared
with a published number only when dataset, target, arch, method, protocol and W/A all match exactly; our
offline ``*-synth`` datasets imitate the published ones but are different data, so they never match.
Our side of a pair is the mean over seeds with its 95 % t-interval (``analysis.stats``), under the chosen
selection rule and under the papers' oracle rule, and the table says whether the published number lies inside
each interval. See ``analysis/published/notes.md`` for the protocol differences behind each number.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.cells import done_runs
from analysis.schema import parse_dataset
from analysis.selection import DEFAULT_RULE, get_rule, value_column
from analysis.stats import Summary, summarize
from benchmarks.run.labels import bits_label

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
PUBLISHED_COLUMNS = ["paper", "table", "dataset", "target", "task_label", "arch", "arch_label", "method",
                     "method_key", "protocol", "w_bits", "a_bits", "metric", "value", "status", "note",
                     "source"]

# Spellings our grids might use -> the canonical names of the CSVs. Extend when a grid names things
# differently; matching is exact after this mapping.
DATASET_ALIASES = {"mnist_m": "mnistm", "mnist-m": "mnistm", "cifar-10": "cifar10", "cifar-100": "cifar100",
                   "synth_digits": "syndigits", "syn_digits": "syndigits", "synthdigits": "syndigits"}
ARCH_ALIASES = {"resnet-20": "resnet20", "resnet_20": "resnet20", "cifar_resnet20": "resnet20",
                "resnet-56": "resnet56", "resnet_56": "resnet56", "cifar_resnet56": "resnet56",
                "resnet-32": "resnet32", "cifar_resnet32": "resnet32", "mobilenetv2": "mobilenet_v2",
                "mobilenet-v2": "mobilenet_v2", "mobilenetv2_cifar": "mobilenet_v2",
                "dann_mnist": "dann_digits"}


def load_published(directory: str | Path = PUBLISHED_DIR) -> pd.DataFrame:
    """All published CSVs in one frame (empty strings for blanks, numbers in ``value``)."""
    frames = []
    for path in sorted(Path(directory).glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in PUBLISHED_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path.name} lacks columns {missing}")
        frames.append(frame.assign(file=path.name))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PUBLISHED_COLUMNS)
    out["value_text"] = out["value"]  # as printed in the paper, e.g. "95.0" stays "95.0"
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out


def canonical_dataset(name: str | None) -> str | None:
    """Our dataset name in the published CSVs' spelling, or None for synthetic stand-ins (never matched)."""
    if not name:
        return ""
    parsed = parse_dataset(name)
    if parsed["synthetic"]:
        return None
    base = DATASET_ALIASES.get(parsed["base"], parsed["base"])
    rho = parsed["lt_ratio"]
    return f"{base}-lt-r{int(rho) if rho == int(rho) else rho}" if rho is not None else base


def _canonical_runs(runs: pd.DataFrame) -> pd.DataFrame:
    done = done_runs(runs).copy()
    done["c_dataset"] = done["dataset"].map(canonical_dataset)
    done["c_target"] = done["target"].map(lambda t: canonical_dataset(t) if isinstance(t, str) else "")
    done["c_arch"] = done["arch"].map(lambda a: ARCH_ALIASES.get(str(a).lower(), str(a).lower()))
    return done


def _fmt(summary: Summary) -> str:
    if summary.n == 0:
        return "—"
    spread = f" ± {summary.half_width:.1f}" if summary.n > 1 else ""
    return f"{summary.mean:.1f}{spread} ({summary.n})"


def _inside(summary: Summary, published: float) -> str:
    """Whether the published number lies in our 95 % interval: yes / no / why it cannot be said."""
    if math.isnan(published):
        return ""
    if summary.n < 2:
        return "n < 2: no interval"
    return "yes" if summary.contains(published) else "no"


def ours_vs_published(runs: pd.DataFrame, published: pd.DataFrame,
                      selection: str = DEFAULT_RULE) -> tuple[pd.DataFrame, str]:
    """Matched (ours, published) pairs and a caption that says what was and was not comparable."""
    rule, oracle = get_rule(selection), get_rule("oracle")
    rules = [rule] if rule is oracle else [rule, oracle]
    done = _canonical_runs(runs)
    pub = published[(published["method_key"] != "") & (published["metric"] == "top1")]
    lines = []
    for _, p in pub.iterrows():
        match = done[(done["c_dataset"] == p["dataset"]) & (done["c_target"] == p["target"])
                     & (done["c_arch"] == p["arch"]) & (done["method"] == p["method_key"])
                     & (done["protocol"] == p["protocol"]) & (done["w_bits"].astype(str) == p["w_bits"])
                     & (done["a_bits"].astype(str) == p["a_bits"])]
        if match.empty:
            continue
        line = {"task": p["task_label"], "arch": p["arch"], "method": p["method_key"],
                "protocol": p["protocol"], "W/A": bits_label(p["w_bits"], p["a_bits"]),
                "published": "fails" if p["status"] == "fails" else p["value_text"]}
        for r in rules:
            ours = summarize(pd.to_numeric(match[value_column(r.name)], errors="coerce").to_numpy())
            line[f"ours ({r.name})"] = _fmt(ours)
            line[f"published in our 95% CI ({r.name})"] = _inside(ours, p["value"])
            if r is rule:
                delta = ours.mean - p["value"] if ours.n and not math.isnan(p["value"]) else math.nan
                line["Δ ours−published"] = "" if math.isnan(delta) else f"{delta:+.1f}"
        lines.append({**line, "source": p["source"], "protocol note": p["note"]})
    n_synth = int((done["c_dataset"].isna() | done["c_target"].isna()).sum())
    caption = (f"Ours: mean ± half-width of the 95 % t-interval over seeds (n runs), at the {rule.caption()}"
               + ("" if rule is oracle else f" and at the {oracle.caption()}")
               + "; 'published in our 95% CI' says whether the published number lies inside that interval "
               "(it needs n ≥ 2). Δ ours−published uses the first rule. Matched only where dataset, target, "
               "arch, method, protocol and W/A agree exactly; see analysis/published/notes.md for protocol "
               "differences (e.g. AlignQ's 80/20 Office-31 split).")
    if n_synth:
        caption += (f" {n_synth} finished run(s) use offline synthetic datasets (*-synth): these are NOT the "
                    "published datasets and are never matched.")
    if not lines:
        caption = "No finished run matches a published number exactly. " + caption
    columns = ["task", "arch", "method", "protocol", "W/A"]
    for r in rules:
        columns += [f"ours ({r.name})", f"published in our 95% CI ({r.name})"]
    columns += ["published", "Δ ours−published", "source", "protocol note"]
    table = pd.DataFrame(lines, columns=columns)
    table = table.sort_values(["task", "arch", "W/A", "method", "source"], kind="stable")
    return table.reset_index(drop=True), caption
