# Reproducible OBD pruning study. `make reproduce` runs everything; `make test` checks the library.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: help setup test lint format lab clean

help:  ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Python 3.11 is required (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name obd --display-name "Python (obd)" >/dev/null
	touch $@

setup: $(STAMP)  ## Create .venv with the pinned environment (idempotent).

lint: $(STAMP)  ## Lint and format-check the code and notebooks.
	$(VENV)/bin/ruff check lib tests notebooks bench
	$(VENV)/bin/ruff format --check lib tests notebooks bench

format: $(STAMP)  ## Format the code.
	$(VENV)/bin/ruff check --fix lib tests notebooks bench
	$(VENV)/bin/ruff format lib tests notebooks bench

test: $(STAMP) lint  ## Lint, then run the test suite.
	$(PY) -m pytest

lab: $(STAMP)  ## Open JupyterLab on notebooks/ with the project kernel.
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean:  ## Remove generated results and reports (keeps .venv and figures/).
	rm -rf results reports results-quick reports-quick
