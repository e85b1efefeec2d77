"""Write a results report: tidy runs CSV, paper tables (Markdown, LaTeX, CSV), coverage, paired comparisons
with a baseline, the across-task aggregate (IQM, probability of improvement, ranks), ours vs published,
figures (PNG, PDF) and an index.md that links the tables and shows the figures.

    python analysis/report.py --runs outputs/smoke --out reports/smoke
    python analysis/report.py --mlflow-uri sqlite:///mlflow.db --experiment smoke --out reports/smoke
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import `analysis` from the repo root, and never let a module
    # of analysis/ (stats.py, ...) shadow a top-level module of the same name, as the script's folder would
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import pandas as pd

from analysis.aggregate import IQM_REPS
from analysis.cells import Table
from analysis.collect import collect_mlflow, collect_runs, read_curves, read_mlflow_curves, write_runs_csv
from analysis.comparisons import DEFAULT_BASELINE, Aggregate, aggregate_tables, paired_table
from analysis.coverage import coverage_summary, coverage_table
from analysis.published import load_published, ours_vs_published
from analysis.render import frame_latex, frame_markdown, to_markdown, write_table
from analysis.scores import ScoreSet, normalised_scores
from analysis.selection import DEFAULT_RULE, RULES, get_rule, value_column
from analysis.tables import all_tables
from benchmarks.run.redact import redact_url

DESCRIPTION = """\
Turn finished benchmark runs into one report folder.

Reads run directories (an output dir holding runs/<run_id>/, or a folder of run dirs) or an MLflow
tracking store, keeps only runs marked done for the numbers, and writes into --out:
  index.md        links every table and shows every figure
  runs.csv        one row per run (spec, layer policy, metrics, status)
  tables/         long-tail, domain-shift, standard and bit-width-sweep tables as .md, .tex, .csv;
                  coverage (runs per cell: done/incomplete/failed/missing); each method vs the
                  baseline (paired by seed); the aggregate over tasks (IQM, P(improvement), ranks);
                  ours vs published
  figures/        accuracy and ECE vs bits, head/medium/tail, per-class, heatmap, reliability, curves,
                  performance profiles, critical-difference diagram
Cells are mean ± half-width of the 95 % t-interval over seeds, with the number of runs in parentheses;
bold only when the best beats every other cell beyond noise (docs/analysis.md says how to read a cell)."""

EPILOG = """\
examples:
  python analysis/report.py --runs outputs/smoke --out reports/smoke
  python analysis/report.py --runs outputs/smoke --out reports/smoke-oracle --selection oracle
  python analysis/report.py --mlflow-uri sqlite:///mlflow.db --experiment smoke --out reports/smoke"""


MLFLOW_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the whole usage)
        self.exit(2, f"report.py: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="analysis/report.py", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", metavar="DIR", help="output dir with runs/<run_id>/, or a folder of run dirs")
    p.add_argument("--out", metavar="DIR", required=True, help="report folder to write, e.g. reports/smoke")
    p.add_argument("--mlflow-uri", metavar="URI", help="read from MLflow instead, e.g. sqlite:///mlflow.db")
    p.add_argument("--experiment", metavar="NAME", action="append", default=[],
                   help="MLflow experiment (one per grid) to read; repeat for several")
    rules = "; ".join(f"{r.name}: {r.description}" for r in RULES.values())
    p.add_argument("--selection", default=DEFAULT_RULE, choices=list(RULES), type=_rule_name,
                   help=f"model-selection rule: which epoch of each run a cell reports ({rules}); "
                        f"default {DEFAULT_RULE}")
    p.add_argument("--baseline", default=DEFAULT_BASELINE, metavar="METHOD",
                   help=f"method the others are compared with, paired by seed (default {DEFAULT_BASELINE})")
    p.add_argument("--bootstrap-reps", type=int, default=IQM_REPS, metavar="N",
                   help=f"bootstrap replicates of the aggregate intervals (default {IQM_REPS}, as rliable)")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="N",
                   help="seed of the bootstrap: the same seed gives the same intervals (default 0)")
    p.add_argument("--seeds", metavar="LIST", help="expected seeds for the coverage table, e.g. 0,1,2 "
                                                   "(default: every seed seen)")
    p.add_argument("--no-figures", action="store_true", help="skip figures (faster)")
    p.add_argument("--figure-formats", default="png,pdf", metavar="LIST",
                   help="figure files to write: png,pdf (default) or png (quicker; PNG is always written)")
    return p


def _rule_name(text: str) -> str:
    """A rule name (the result.json metric names of older versions are accepted for their rule)."""
    try:
        return get_rule(text).name
    except KeyError:
        return text  # argparse's choices check then names the valid rules


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int] | None:
    if bool(args.runs) == bool(args.mlflow_uri):
        p.error("give exactly one source: --runs DIR or --mlflow-uri URI")
    if not set(args.figure_formats.split(",")) <= {"png", "pdf"}:
        p.error(f"--figure-formats {args.figure_formats!r}: use png,pdf or png")
    if args.mlflow_uri and not args.experiment:
        p.error("--mlflow-uri needs at least one --experiment NAME")
    scheme = args.mlflow_uri.partition("://")[0].split("+")[0].lower() if args.mlflow_uri else None
    if args.mlflow_uri and ("://" not in args.mlflow_uri or scheme not in MLFLOW_SCHEMES):
        p.error(f"--mlflow-uri {redact_url(args.mlflow_uri)!r}: unknown scheme; valid: "
                f"{', '.join(MLFLOW_SCHEMES)}")
    if args.bootstrap_reps < 100:
        p.error(f"--bootstrap-reps {args.bootstrap_reps}: use at least 100")
    if args.runs and not Path(args.runs).is_dir():
        p.error(f"--runs {args.runs}: no such directory")
    if args.runs and not _has_run_dirs(Path(args.runs)):
        p.error(f"--runs {args.runs}: no run directories in it (expected runs/<run_id>/spec.json or "
                "<run_id>/spec.json)")
    try:
        return [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    return None


def _has_run_dirs(folder: Path) -> bool:
    """An output directory (``runs/<run_id>/``) or a folder of run directories with at least one run."""
    root = folder / "runs" if (folder / "runs").is_dir() else folder
    return any((child / "spec.json").is_file() for child in root.iterdir() if child.is_dir())


def _table_links(name: str) -> str:
    return f"[Markdown](tables/{name}.md) · [LaTeX](tables/{name}.tex) · [CSV](tables/{name}.csv)"


def _write_frame(df: pd.DataFrame, tables_dir: Path, name: str, title: str, caption: str) -> str:
    """A plain table as .md, .tex and .csv; returns its Markdown."""
    markdown = frame_markdown(df, title, caption)
    (tables_dir / f"{name}.md").write_text(markdown)
    (tables_dir / f"{name}.tex").write_text(frame_latex(df, title, name, caption))
    df.to_csv(tables_dir / f"{name}.csv", index=False, lineterminator="\n")
    return markdown


def _figure_lines(out: Path, figures: dict[str, list[Path]]) -> list[str]:
    lines = []
    for kind, paths in figures.items():
        lines += [f"### {kind}", ""]
        for png in paths:
            rel = png.relative_to(out)
            lines.append(f"![{png.stem}]({rel.as_posix()})  ")
            if png.with_suffix(".pdf").exists():
                lines.append(f"[PDF]({rel.with_suffix('.pdf').as_posix()})")
            lines.append("")
    return lines


READING = ("How to read a cell: `85.9 ± 1.4 (3)` is the mean over 3 seeds ± the half-width of its 95 % "
           "t-interval; bold = the best of its W/A block beyond noise (paired per-seed difference); "
           "≈ = tied for best; a superscript letter = compared across different layer policies or tuned/"
           "default hyper-parameters (the caption lists them); `(1)` = one run, no interval, never bold. "
           "See docs/analysis.md.")


def write_index(out: Path, source: str, selection: str, tables: list[Table], coverage_line: str,
                sections: dict[str, tuple[list[str], str]], figures: dict[str, list[Path]],
                aggregate_figures: dict[str, list[Path]]) -> Path:
    """index.md: the paper tables, then the comparison sections (title -> table names, Markdown), figures."""
    rule = get_rule(selection)
    lines = ["# Benchmark report", "",
             f"Source: `{source}`  ",
             f"Selection rule: `{rule.name}`: {rule.description}  ",
             f"Coverage: {coverage_line} — {_table_links('coverage')}  ",
             "Tidy runs table: [runs.csv](runs.csv)", "", READING, "", "## Tables", ""]
    for table in tables:
        lines += [to_markdown(table), _table_links(table.name), ""]
    for title, (names, markdown) in sections.items():
        lines += [f"## {title}", "", markdown] + [f"{_table_links(n)}  " for n in names] + [""]
        if "aggregate" in names:
            lines += _figure_lines(out, aggregate_figures)
    lines += ["Protocol differences behind published numbers: `analysis/published/notes.md`.", "",
              "## Figures", ""]
    if not figures:
        lines.append("No figure had the data it needs.")
    lines += _figure_lines(out, figures)
    index = out / "index.md"
    index.write_text("\n".join(lines) + "\n")
    return index


def _write_tta(rows: list[dict[str, Any]], tables_dir: Path) -> str:
    """tables/tta.{md,csv}: online error per corruption in stream order and the mean (CoTTA's layout)."""
    from analysis.tta_table import to_markdown as tta_markdown
    from analysis.tta_table import tta_tables

    tables = tta_tables(rows)
    markdown = "\n".join(tta_markdown(title, frame) for title, frame in tables)
    (tables_dir / "tta.md").write_text(markdown)
    everything = pd.concat([frame.assign(table=title) for title, frame in tables])
    everything.to_csv(tables_dir / "tta.csv", index=False, lineterminator="\n")
    (tables_dir / "tta.tex").write_text(frame_latex(everything, "Continual test-time adaptation", "tta",
                                                    "Online error (%) per corruption in stream order."))
    return markdown


def _aggregate_markdown(agg: Aggregate) -> str:
    return (frame_markdown(agg.summary, "IQM and probability of improvement", agg.summary_caption)
            + "\n" + frame_markdown(agg.ranks, "Mean ranks", agg.ranks_caption))


def make_report(runs_df: pd.DataFrame, curves: pd.DataFrame, out: Path, source: str,
                selection: str = DEFAULT_RULE, seeds: list[int] | None = None,
                figure_formats: tuple[str, ...] = ("png", "pdf"), baseline: str = DEFAULT_BASELINE,
                bootstrap_reps: int = IQM_REPS, bootstrap_seed: int = 0,
                tta_rows: list[dict[str, Any]] | None = None) -> tuple[Path, list[Table]]:
    """Write the whole report folder; returns the index path and the paper tables written. ``tta_rows``
    (``analysis.tta_table.collect_tta``): continual test-time adaptation runs, a section in CoTTA's layout."""
    selection = get_rule(selection).name
    tables_dir = out / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    write_runs_csv(runs_df, out / "runs.csv")
    tables = all_tables(runs_df, selection)
    for table in tables:
        write_table(table, tables_dir)
    coverage = coverage_table(runs_df, seeds)
    line = coverage_summary(coverage)
    caption = ("Runs per table cell. expected = seeds expected per cell; missing = expected seeds without "
               "any run dir. Incomplete and failed runs are never in a mean.")
    (tables_dir / "coverage.md").write_text(frame_markdown(coverage, "Coverage", f"{line}. {caption}"))
    (tables_dir / "coverage.tex").write_text(frame_latex(coverage, "Coverage", "coverage", caption))
    coverage.to_csv(tables_dir / "coverage.csv", index=False, lineterminator="\n")
    paired, paired_caption = paired_table(runs_df, selection, baseline)
    paired_name = f"paired_vs_{baseline}"
    scores: ScoreSet = normalised_scores(runs_df, selection)
    agg = aggregate_tables(scores, selection, baseline, bootstrap_reps, bootstrap_seed)
    _write_frame(agg.summary, tables_dir, "aggregate", "Aggregate over tasks", agg.summary_caption)
    _write_frame(agg.ranks, tables_dir, "ranks", "Mean ranks over tasks", agg.ranks_caption)
    ovp, ovp_caption = ours_vs_published(runs_df, load_published(), selection)
    sections = {
        f"Each method vs {baseline}, paired by seed": (
            [paired_name], _write_frame(paired, tables_dir, paired_name, f"Paired differences to {baseline}",
                                      paired_caption)),
        "Aggregate over tasks": (["aggregate", "ranks"], _aggregate_markdown(agg)),
        "Ours vs published": (["ours_vs_published"], _write_frame(ovp, tables_dir, "ours_vs_published",
                                                                "Ours vs published", ovp_caption)),
    }
    if tta_rows:
        sections["Continual test-time adaptation"] = (["tta"], _write_tta(tta_rows, tables_dir))
    made, made_aggregate = {}, {}
    if figure_formats:
        from analysis.aggregate_figures import aggregate_figures  # matplotlib only when figures are wanted
        from analysis.figures import all_figures

        made = all_figures(runs_df, curves, out / "figures", value_column(selection), figure_formats)
        made_aggregate = aggregate_figures(scores, agg.mean_ranks, agg.cd, out / "figures", figure_formats,
                                           bootstrap_seed)
    return write_index(out, source, selection, tables, line, sections, made, made_aggregate), tables


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds = _check_args(parser, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tta_rows = None
    try:
        if args.runs:
            from analysis.tta_table import collect_tta

            runs_df, info = collect_runs(args.runs)
            tta_rows = collect_tta(Path(args.runs))
            curves = read_curves(runs_df["source"].tolist())
            source = args.runs
        else:
            runs_df, info = collect_mlflow(args.mlflow_uri, args.experiment)
            curves = read_mlflow_curves(args.mlflow_uri, args.experiment)
            source = f"{redact_url(args.mlflow_uri)} ({', '.join(args.experiment)})"
    except (OSError, ValueError) as err:
        print(f"report.py: error: {err}", file=sys.stderr)
        return 2
    formats = () if args.no_figures else tuple(args.figure_formats.split(","))
    index, tables = make_report(runs_df, curves, Path(args.out), source, args.selection, seeds, formats,
                                args.baseline, args.bootstrap_reps, args.bootstrap_seed, tta_rows)
    print(info.summary())
    print(to_markdown(tables[0]) if tables else "No finished runs: no tables (see the coverage table).")
    print(f"Report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
