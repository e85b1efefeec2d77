"""Continual test-time adaptation tables in CoTTA's layout: one row per (quantized parent, bits, TTA method),
the online error (%) of each corruption in stream order, then the mean.

    python analysis/tta_table.py --runs outputs/tta --out reports/tta

Reads finished TTA run directories (``spec.json`` kind ``tta``, and the ``tta`` section of ``result.json``);
a stream that differs between rows (order, severity, source) gets its own table. Torch-free.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import `analysis` from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import pandas as pd

from benchmarks.run.labels import bits_label, bits_sort_key, task_label
from benchmarks.run.rundir import RunState, read_json, run_dirs

TTA_ORDER = ("source", "bn", "tent", "cotta", "ttaq")
TTA_DISPLAY = {"source": "Source", "bn": "BN-adapt", "tent": "TENT", "cotta": "CoTTA", "ttaq": "TTAQ-recon"}
SHORT = {"gaussian_noise": "gaussian", "shot_noise": "shot", "impulse_noise": "impulse",
         "defocus_blur": "defocus",
         "glass_blur": "glass", "motion_blur": "motion", "zoom_blur": "zoom", "elastic_transform": "elastic",
         "jpeg_compression": "jpeg", "speckle_noise": "speckle", "gaussian_blur": "gauss_blur"}


def collect_tta(runs: Path) -> list[dict[str, Any]]:
    """One record per finished TTA run: its labels, stream and per-corruption errors."""
    rows = []
    for directory in run_dirs(runs):
        if directory.state() is not RunState.DONE:
            continue
        spec = (directory.read_spec() or {}).get("spec") or {}
        if spec.get("kind") != "tta":
            continue
        tta = read_json(directory.result_path).get("tta") or {}
        stream = spec.get("stream") or {}
        rows.append({
            "run_id": directory.run_id,
            "task": task_label(spec["task"]["dataset"], spec["task"].get("target")),
            "arch": spec["arch"], "quant": spec.get("quant_method"),
            "bits": bits_label(spec["w_bits"], spec["a_bits"]),
            "tta": spec["method"], "seed": spec["seed"], "hparams": dict(spec.get("hparams") or {}),
            "stream": f"{stream.get('source')} severity {stream.get('severity')}, "
                      f"{tta.get('images', [0])[0]} images per corruption, batch {stream.get('batch_size')}",
            "corruptions": tuple(tta["corruptions"]), "error": list(tta["error"]), "mean": tta["mean_error"],
            "adapt_s": tta.get("adapt_s"),
        })
    return rows


def tta_tables(rows: list[dict[str, Any]]) -> list[tuple[str, pd.DataFrame]]:
    """(title, frame) per task/arch/stream: rows sorted by parent, bits, TTA method; columns in stream
    order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["arch"], row["stream"], row["corruptions"]), []).append(row)
    tables = []
    for (task, arch, stream, corruptions), members in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        members.sort(key=lambda r: (r["quant"], bits_sort_key(r["bits"]), _tta_rank(r["tta"]), r["seed"]))
        frame = pd.DataFrame([
            {"parent": r["quant"], "bits": r["bits"], "method": method_label(r["tta"], r["hparams"]),
             "seed": r["seed"], **{SHORT.get(c, c): e for c, e in zip(corruptions, r["error"])},
             "mean": r["mean"], "time_s": r["adapt_s"]} for r in members])
        tables.append((f"{task}, {arch}: online error (%), {stream}", frame))
    return tables


def method_label(method: str, hparams: dict[str, Any]) -> str:
    """The display name, with the grid's non-default hyper-parameters when a run sets any."""
    name = TTA_DISPLAY.get(method, method)
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(hparams.items()))})" if hparams else name


def _tta_rank(method: str) -> tuple[int, str]:
    return (TTA_ORDER.index(method), "") if method in TTA_ORDER else (len(TTA_ORDER), method)


def to_markdown(title: str, frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    lines = [f"### {title}", "", header, "|" + "---|" * len(frame.columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="an output directory holding runs/ (e.g. outputs/tta)")
    p.add_argument("--out", required=True, help="where tta.md and tta.csv go")
    args = p.parse_args(argv)
    rows = collect_tta(Path(args.runs))
    if not rows:
        print(f"no finished TTA runs under {args.runs}/runs", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = tta_tables(rows)
    text = "# Continual test-time adaptation\n\n" + "\n".join(to_markdown(t, f) for t, f in tables)
    (out / "tta.md").write_text(text)
    pd.concat([f.assign(table=t) for t, f in tables]).to_csv(out / "tta.csv", index=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
