"""Records -> tidy tables -> paper tables (Markdown, LaTeX, CSV), figures and published numbers.

Reads run directories (and MLflow) only; never imports ``benchmarks`` or ``methods``. Entry point:
``python analysis/report.py --runs DIR --out reports/NAME`` (see docs/analysis.md).
"""
