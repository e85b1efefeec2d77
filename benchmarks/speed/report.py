"""The speed benchmark's output: a device label, the Markdown table it prints and the CSV it writes."""
from __future__ import annotations

import csv
import platform
from pathlib import Path
from typing import Any

import torch

CSV_FIELDS = [
    "section",
    "device",
    "arch",
    "bits",
    "batch_size",
    "amp",
    "channels_last",
    "compile",
    "method",
    "train_ms",
    "fp_train_ms",
    "train_ratio",
    "train_img_s",
    "eval_ms",
    "fp_eval_ms",
    "eval_ratio",
    "eval_img_s",
    "eager_train_ms",
    "compile_speedup",
    "eager_eval_ms",
    "compile_s",
    "cuda_graphs",
    "runs",
    "single_img_s",
    "aggregate_img_s",
    "peak_mb",
    "fp_peak_mb",
    "memory_kind",
    "steps",
    "value",
    "unit",
    "note",
    "error",
]


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.machine()} x{torch.get_num_threads()} threads"


# ------------------------------------------------------------------------------------------------ output
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    steps = [r for r in rows if r["section"] == "step"]
    if steps:
        r0 = steps[0]
        out.append(
            f"### Step time vs FP — {r0['device']}, {r0['arch']} {r0['bits']}, batch {r0['batch_size']}, "
            f"amp={r0['amp']}, channels_last={r0['channels_last']}, compile={r0['compile']}, "
            f"{r0['steps']} timed steps\n"
        )
        out.append(
            "| method | train ms | FP train ms | train ×FP | train img/s | eval ms | FP eval ms | eval ×FP "
            "| eval img/s | step peak MiB (FP) |"
        )
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in steps:
            if r.get("error"):
                out.append(f"| {r['method']} | error: {r['error']} |" + " |" * 8)
                continue
            mem = "–" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f} ({_fmt(r.get('fp_peak_mb'), 0)})"
            out.append(
                f"| {r['method']} | {_fmt(r['train_ms'])} | {_fmt(r['fp_train_ms'])} | "
                f"**{_fmt(r['train_ratio'])}** | {_fmt(r['train_img_s'], 0)} | {_fmt(r['eval_ms'])} | "
                f"{_fmt(r['fp_eval_ms'])} | {_fmt(r['eval_ratio'])} | {_fmt(r['eval_img_s'], 0)} | {mem} |"
            )
        if steps[0].get("memory_kind"):
            out.append(f"\nMemory: {steps[0]['memory_kind']}.")
    out += compiled_markdown([r for r in rows if r["section"] == "compiled"])
    other = [r for r in rows if r["section"] not in ("step", "compiled")]
    if other:
        out.append("\n| section | what | value | unit | note |")
        out.append("| --- | --- | ---: | --- | --- |")
        for r in other:
            value = (
                f"error: {r['error']}"
                if r.get("error")
                else _fmt(r.get("value"), 3 if r.get("unit") != "images/s" else 0)
            )
            out.append(
                f"| {r['section']} | {r['method']} | {value} | {r.get('unit', '')} | {r.get('note', '')} |"
            )
    return "\n".join(out)


def compiled_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The compiled section: each compiled method against compiled FP and against itself in eager mode."""
    if not rows:
        return []
    out = ["\n### Compiled steps — ×compiled FP, and eager/compiled (speed-up) of the same method\n",
           "| method | train ms | compiled FP train ms | train ×FP | eager train ms | eager/compiled "
           "| eval ×FP | compiling s | CUDA graphs |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['method']} | error: {r['error']} |" + " |" * 7)
            continue
        out.append(f"| {r['method']} | {_fmt(r['train_ms'])} | {_fmt(r['fp_train_ms'])} | "
                   f"**{_fmt(r['train_ratio'])}** | {_fmt(r['eager_train_ms'])} | "
                   f"**{_fmt(r['compile_speedup'])}** | {_fmt(r['eval_ratio'])} | "
                   f"{_fmt(r['compile_s'], 0)} | "
                   f"{r['cuda_graphs']} |")
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


# ------------------------------------------------------------------------------------------------ CLI
