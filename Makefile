# make run: the whole pipeline on params.yaml; make test: the test suite (make test-fast: no
# pipeline runs, no training; make test-stack / test-ui: the team stack, the browser tests).
# Both create .venv on first use and reinstall only when pyproject.toml changed: `run` installs
# slimline alone, the test and lint targets add the dev extras (pytest, the stack's servers, ...).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# Telemetry off for every tool the targets start (src/slimline/core/env.py sets the same switches).
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export ORT_DISABLE_TELEMETRY := 1
# DVC stages run `python`: the venv's
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast test-stack test-ui screenshots lint format clean distclean

run: $(STAMP)
	$(BIN)/slimline run

# test and test-fast run on WORKERS pytest-xdist workers (WORKERS=0: in this process). A test
# file runs whole on one worker, and every test of a session's shared run (the pipeline run, the
# flow run, the team stack) on the same worker, so each is made once (tests/conftest.py).
WORKERS ?= 2
XDIST := -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

# everything, as CI runs it (.ci/run)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(XDIST)

# everything but the real pipeline runs and training (`slow`)
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

# the team stack run natively (PostgreSQL, S3, MLflow, Prefect, Dask): one shared stack, so
# one process
test-stack: $(DEV_STAMP)
	$(BIN)/python -m pytest -m stack

# the MLflow and Prefect UIs in a real headless Chromium, on one shared run: one process
test-ui: $(DEV_STAMP)
	$(BIN)/python -m pytest -m ui

# retake reports/ui/*.png (docs/tracking.md) on the default params: two real runs, ~10 minutes
screenshots: $(DEV_STAMP)
	SLIMLINE_UI_DEFAULT=1 SLIMLINE_UI_SHOTS=reports/ui $(BIN)/python -m pytest -m ui \
		tests/flows/test_ui_screens.py

# style, types (src/), and the import contract between the layers of src/slimline
lint: $(DEV_STAMP)
	$(BIN)/ruff check src stages flows tests bench
	$(BIN)/ruff format --check src stages flows tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix src stages flows tests bench
	$(BIN)/ruff format src stages flows tests bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Plain pip: this machine's pip config takes the CPU torch build from local disk. pip's
# warnings about this machine's absent extra index folders are filtered out.
PIP_INSTALL := $(BIN)/python -m pip install -q --disable-pip-version-check
PIP_QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e . 2>&1 | $(PIP_QUIET)
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[dev]' 2>&1 | $(PIP_QUIET)
	touch $(DEV_STAMP)

# Pipeline outputs (DVC can restore them: `dvc checkout`) and caches. Keeps .venv and the
# MLflow store (mlflow.db, mlartifacts/), which hold the registry's history.
clean:
	rm -rf data/prepared models dist metrics plots reports .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) src/*.egg-info
