"""Records -> tidy tables -> paper tables (Markdown, LaTeX, CSV), statistics, figures and published numbers.

Reads run directories (and MLflow) only: of ``benchmarks`` it imports the torch-free run contract
(``benchmarks.run.labels``, ``.rundir``, ``.result``), never training code or ``methods``. Entry point:
``python analysis/report.py --runs DIR --out reports/NAME`` (see docs/analysis.md).
"""
