# make run: the whole pipeline on params.yaml; make test: the test suite (make test-fast: no
# pipeline runs, no training).
# Both create .venv on first use and reinstall only when pyproject.toml changed.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Telemetry off for every tool the targets start (../shared/STACK.md lists each switch).
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export ORT_DISABLE_TELEMETRY := 1
# DVC stages run `python`: the venv's
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast lint format clean distclean

run: $(STAMP)
	$(BIN)/slimline run

test: $(STAMP)
	$(BIN)/python -m pytest

# everything but the real pipeline runs and training (`slow`): about 2 minutes on 2 cores
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# style, types (src/), and the import contract between the layers of src/slimline
lint: $(STAMP)
	$(BIN)/ruff check src stages flows tests bench
	$(BIN)/ruff format --check src stages flows tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix src stages flows tests bench
	$(BIN)/ruff format src stages flows tests bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Plain pip: this machine's pip config takes the CPU torch build from local disk. pip's
# warnings about this machine's absent extra index folders are filtered out.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $(STAMP)

# Pipeline outputs (DVC can restore them: `dvc checkout`) and caches. Keeps .venv and the
# MLflow store (mlflow.db, mlartifacts/), which hold the registry's history.
clean:
	rm -rf data/prepared models dist metrics plots reports .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) src/*.egg-info
