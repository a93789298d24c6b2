# Everything runs from a local virtualenv so a fresh machine with only Python 3.11+ works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-slow lint typecheck check bench run clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Everything but the runs of several seconds each (marker "slow"); those: make test-slow.
test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test test-slow

bench: $(STAMP)
	$(BIN)/stratum-proxy bench

# The bundled test pool, the proxy on proxy.toml.example and simulated miners; Ctrl-C stops.
run: $(STAMP)
	$(BIN)/stratum-proxy demo --config proxy.toml.example

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
