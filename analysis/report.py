"""Write a results report: tidy runs CSV, paper tables (Markdown, LaTeX, CSV), coverage, ours vs published,
figures (PNG, PDF) and an index.md that links the tables and shows the figures.

    python analysis/report.py --runs outputs/smoke --out reports/smoke
    python analysis/report.py --mlflow-uri sqlite:///mlflow.db --experiment smoke --out reports/smoke
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from the repo root: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from analysis.cells import Table
from analysis.collect import collect_mlflow, collect_runs, read_curves, read_mlflow_curves, write_runs_csv
from analysis.coverage import coverage_summary, coverage_table
from analysis.published import load_published, ours_vs_published
from analysis.render import frame_latex, frame_markdown, to_markdown, write_table
from analysis.schema import SELECTION_RULES
from analysis.tables import all_tables

DESCRIPTION = """\
Turn finished benchmark runs into one report folder.

Reads run directories (an output dir holding runs/<run_id>/, or a folder of run dirs) or an MLflow
tracking store, keeps only runs marked done for the numbers, and writes into --out:
  index.md        links every table and shows every figure
  runs.csv        one row per run (spec, layer policy, metrics, status)
  tables/         long-tail, domain-shift, standard and bit-width-sweep tables as .md, .tex, .csv;
                  coverage (runs per cell: done/incomplete/failed/missing); ours vs published
  figures/        accuracy and ECE vs bits, head/medium/tail, per-class, heatmap, reliability, curves
Cells are mean ± sample std over seeds with the number of runs in parentheses."""

EPILOG = """\
examples:
  python analysis/report.py --runs outputs/smoke --out reports/smoke
  python analysis/report.py --runs outputs/smoke --out reports/smoke-oracle --selection top1_best
  python analysis/report.py --mlflow-uri sqlite:///mlflow.db --experiment smoke --out reports/smoke"""


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
    p.add_argument("--selection", default="top1_last", choices=sorted(SELECTION_RULES),
                   help="which accuracy a cell averages: top1_last (default, last epoch), top1_best "
                        "(best test epoch = the papers' oracle), top1_val_selected (best validation epoch)")
    p.add_argument("--seeds", metavar="LIST", help="expected seeds for the coverage table, e.g. 0,1,2 "
                                                   "(default: every seed seen)")
    p.add_argument("--no-figures", action="store_true", help="skip figures (faster)")
    p.add_argument("--figure-formats", default="png,pdf", metavar="LIST",
                   help="figure files to write: png,pdf (default) or png (quicker; PNG is always written)")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int] | None:
    if bool(args.runs) == bool(args.mlflow_uri):
        p.error("give exactly one source: --runs DIR or --mlflow-uri URI")
    if not set(args.figure_formats.split(",")) <= {"png", "pdf"}:
        p.error(f"--figure-formats {args.figure_formats!r}: use png,pdf or png")
    if args.mlflow_uri and not args.experiment:
        p.error("--mlflow-uri needs at least one --experiment NAME")
    if args.runs and not Path(args.runs).is_dir():
        p.error(f"--runs {args.runs}: no such directory")
    try:
        return [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    return None


def _table_links(name: str) -> str:
    return f"[Markdown](tables/{name}.md) · [LaTeX](tables/{name}.tex) · [CSV](tables/{name}.csv)"


def write_index(out: Path, source: str, selection: str, tables: list[Table], coverage_line: str,
                ovp_md: str, figures: dict[str, list[Path]]) -> Path:
    lines = ["# Benchmark report", "",
             f"Source: `{source}`  ",
             f"Selection rule: `{selection}` ({SELECTION_RULES[selection]})  ",
             f"Coverage: {coverage_line} — {_table_links('coverage')}  ",
             "Tidy runs table: [runs.csv](runs.csv)", "", "## Tables", ""]
    for table in tables:
        lines += [to_markdown(table), _table_links(table.name), ""]
    lines += ["## Ours vs published", "", ovp_md, _table_links("ours_vs_published"),
              "", "Protocol differences: `analysis/published/notes.md`.", "", "## Figures", ""]
    if not figures:
        lines.append("No figure had the data it needs.")
    for kind, paths in figures.items():
        lines += [f"### {kind}", ""]
        for png in paths:
            rel = png.relative_to(out)
            lines.append(f"![{png.stem}]({rel.as_posix()})  ")
            if png.with_suffix(".pdf").exists():
                lines.append(f"[PDF]({rel.with_suffix('.pdf').as_posix()})")
            lines.append("")
    index = out / "index.md"
    index.write_text("\n".join(lines) + "\n")
    return index


def make_report(runs_df: pd.DataFrame, curves: pd.DataFrame, out: Path, source: str,
                selection: str = "top1_last", seeds: list[int] | None = None,
                figure_formats: tuple[str, ...] = ("png", "pdf")) -> tuple[Path, list[Table]]:
    """Write the whole report folder; returns the index path and the tables written."""
    tables_dir = out / "tables"
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
    ovp, ovp_caption = ours_vs_published(runs_df, load_published(), selection)
    ovp_md = frame_markdown(ovp, "Ours vs published", ovp_caption)
    (tables_dir / "ours_vs_published.md").write_text(ovp_md)
    (tables_dir / "ours_vs_published.tex").write_text(frame_latex(ovp, "Ours vs published",
                                                                  "ours_vs_published", ovp_caption))
    ovp.to_csv(tables_dir / "ours_vs_published.csv", index=False, lineterminator="\n")
    made = {}
    if figure_formats:
        from analysis.figures import all_figures  # matplotlib only when figures are wanted

        made = all_figures(runs_df, curves, out / "figures", selection, figure_formats)
    return write_index(out, source, selection, tables, line, ovp_md, made), tables


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds = _check_args(parser, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.runs:
            runs_df, info = collect_runs(args.runs)
            curves = read_curves(runs_df["source"].tolist())
            source = args.runs
        else:
            runs_df, info = collect_mlflow(args.mlflow_uri, args.experiment)
            curves = read_mlflow_curves(args.mlflow_uri, args.experiment)
            source = f"{args.mlflow_uri} ({', '.join(args.experiment)})"
    except (OSError, ValueError) as err:
        print(f"report.py: error: {err}", file=sys.stderr)
        return 2
    formats = () if args.no_figures else tuple(args.figure_formats.split(","))
    index, tables = make_report(runs_df, curves, Path(args.out), source, args.selection, seeds, formats)
    print(info.summary())
    print(to_markdown(tables[0]) if tables else "No finished runs: no tables (see the coverage table).")
    print(f"Report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
