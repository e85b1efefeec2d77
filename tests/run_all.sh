#!/usr/bin/env bash
# The README's test command (`make test`) and CI run this: the whole suite — fast tests, the slow end-to-end
# ones, and the SLURM ones against a real one-node cluster on localhost that this script starts and stops.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
started_cluster=0
if [ "${QBENCH_SKIP_SLURM:-0}" != "1" ]; then
  if bash slurm/cluster.sh status >/dev/null 2>&1; then
    echo "== SLURM test cluster already up"
  elif bash slurm/cluster.sh up >/tmp/qbench-slurm-up.log 2>&1; then
    started_cluster=1
    echo "== SLURM test cluster started (slurm/cluster.sh up)"
  else
    echo "== SLURM test cluster could not start; SLURM tests will skip. Last lines of its log:"
    tail -n 5 /tmp/qbench-slurm-up.log
  fi
fi
cleanup() { [ "$started_cluster" = 1 ] && bash slurm/cluster.sh down >/dev/null 2>&1; }
trap cleanup EXIT
# The style the code aims for, enforced: lint (pyflakes, pycodestyle, import order; 110 columns) and types.
echo "== ruff check"
$PY -m ruff check methods benchmarks analysis tests || exit 1
echo "== mypy (configured in pyproject.toml)"
$PY -m mypy || exit 1
# -m overrides pyproject's default selection (which leaves slow/slurm tests out of a plain `pytest`).
# --durations shows where the time goes; pytest's own summary line ("N passed, M skipped") ends the output.
$PY -m pytest -m "not gpu" -p no:cacheprovider -q -rs --durations=15 "$@"
