# Reproducible OBD pruning study. `make reproduce` runs everything; `make test` checks the library.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.11, 3.12 or 3.13 (the pins resolve on each); PYTHON=/path/to/python3.x chooses one.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
# the environment every target uses; `make test VENV=.venv-3.12 PYTHON=python3.12` keeps another
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PYTHONHASHSEED := 0
# One OpenBLAS thread per process: NumPy/SciPy's LAPACK (the OBS inverses) spin-waits when two
# notebooks run side by side on a 2-core machine (a batched Cholesky inverse took 118 s instead of
# 2 s). JAX's own thread pool is not affected.
export OPENBLAS_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: help setup test test-pythons lint format lab site sync clean reproduce study data bench

help:  ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || \
	  { echo "Python 3.11, 3.12 or 3.13 is required (found $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.x" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(STAMP)  ## Create .venv with the pinned environment (idempotent).

lint: $(STAMP)  ## Lint and format-check the code and notebooks.
	$(VENV)/bin/ruff check lib tests notebooks bench
	$(VENV)/bin/ruff format --check lib tests notebooks bench
	$(VENV)/bin/lint-imports

format: $(STAMP)  ## Format the code.
	$(VENV)/bin/ruff check --fix lib tests notebooks bench
	$(VENV)/bin/ruff format lib tests notebooks bench

test: $(STAMP) lint  ## Lint, then run the test suite.
	$(PY) -m pytest

# `make test` once per interpreter, each in its own environment .venv-<major.minor> (built on first
# use). PYTHONS lists commands or paths; every one is run, and the target fails if any failed.
PYTHONS ?= python3.11 python3.12 python3.13
test-pythons:  ## Lint and test under each of PYTHONS, each in its own .venv-3.x.
	@failed=""; \
	for py in $(PYTHONS); do \
	  if ! ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then \
	    echo "✗ $$py: not found (PYTHONS lists interpreters: commands or paths)" >&2; \
	    failed="$$failed $$py"; continue; \
	  fi; \
	  echo "▶ $$py (Python $$ver) in .venv-$$ver"; \
	  $(MAKE) --no-print-directory test PYTHON="$$py" VENV=".venv-$$ver" || failed="$$failed $$py"; \
	done; \
	if [ -n "$$failed" ]; then echo "✗ failed with:$$failed" >&2; exit 1; fi; \
	echo "✓ lint and tests passed with: $(PYTHONS)"

# `make lab` registers .venv as the Jupyter kernel "obd" for this user (VS Code and any other
# Jupyter find it too), then opens JupyterLab; as root (e.g. in a container) it adds --allow-root.
# LAB_ARGS passes more options, e.g. LAB_ARGS="--ip=0.0.0.0 --no-browser" inside a container.
LAB_ARGS ?=
lab: $(STAMP)  ## Install the "obd" Jupyter kernel and open JupyterLab on notebooks/.
	$(PY) -m ipykernel install --user --name obd --display-name "Python (obd)"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

sync: $(STAMP)  ## Sync each notebook with its py:percent twin (jupytext; the newer side wins).
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

site: $(STAMP)  ## Rebuild the report site (reports/site/, reports/index.html) from existing runs.
	$(PY) -m obd.study.report --reports $(REPORTS) --figures $(FIGURES) --results $(RESULTS)

clean:  ## Remove generated results, reports and scratch/ (keeps .venv and the committed figures/).
	rm -rf results reports quick scratch

# ---------------------------------------------------------------------------------------------
# The study: its runs are declared once, in configs/runs.yaml, with the settings of a profile,
# configs/full.yaml or (QUICK=1: tiny, into quick/) configs/quick.yaml; obd.pipeline.rules makes
# them the rules included below (why a generator, not a workflow engine: its docstring). A run's
# report, written last and atomically, marks it done. A run depends on its notebook, every library
# file (LIB_DEPS), its upstream reports and its stamp $(REPORTS)/.params/NAME.args (its arguments,
# rewritten only if changed): a setting given here (STEPS=100, SEEDS="0 1", CONVNET_ALL_SEEDS=0,
# PRUNE_ARGS="-p ..."; see configs/full.yaml) reruns exactly the runs whose arguments differ.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
QUICK ?= 0
PROFILE := configs/$(if $(filter 1,$(QUICK)),quick,full).yaml
OUT := $(if $(filter 1,$(QUICK)),quick/)
RESULTS ?= $(OUT)results
REPORTS ?= $(OUT)reports
FIGURES ?= $(OUT)figures
# the blog's own checkpoints (README); without them the replay is left out of the report
BLOG2016_DIR ?= $(or $(OBD_BLOG2016_DIR),../shared/data/blog2016)

# obd.pipeline.outputs runs obd.pipeline.runner and records what each notebook wrote
RUN := $(PY) -m obd.pipeline.outputs run
LIB_DEPS := $(wildcard lib/obd/*.py lib/obd/*/*.py lib/obd/*/*.csv)
RULES := $(REPORTS)/.params/rules.mk
# remade on each call that may run notebooks (not `make help`, `make test`; nor the venv under -n)
ifneq ($(filter study $(REPORTS)/%,$(MAKECMDGOALS)),)
include $(RULES)
endif
$(RULES): FORCE | $(if $(findstring n,$(firstword -$(MAKEFLAGS))),,$(STAMP))
	@$(PY) -m obd.pipeline.rules --table configs/runs.yaml --profile $(PROFILE) --env \
	  --reports $(REPORTS) --results $(RESULTS) --figures $(FIGURES) \
	  --folder blog2016=$(BLOG2016_DIR) --write-stamps --out $@
FORCE:

data: $(STAMP)  ## Fetch MNIST (or find it under TFDS_DATA_DIR) and cache the decoded arrays.
	@$(PY) -m obd.study.data train test

study: $(REPORTS)/index.html

# GOAL: what to build under the lock (default: the whole study; the tests build one report).
GOAL ?= study
# One run at a time per output folder: a second `make reproduce` waits for the first (the lock is
# released however the first ends, even killed). Under the lock, the temporary files of writes a
# killed run left behind are removed, then the study resumes where it stopped.
reproduce: data  ## Run every variant and render figures/ and reports/ (QUICK=1: tiny, into quick/).
	@$(PY) -m obd.pipeline.io locked $(REPORTS)/.reproduce.lock sh -c '\
	  $(PY) -m obd.pipeline.io clean $(RESULTS) $(REPORTS) $(FIGURES) && \
	  $(PY) -m obd.pipeline.outputs check $(REPORTS) && \
	  $(MAKE) --no-print-directory -j$(JOBS) $(GOAL) QUICK=$(QUICK)'
	@echo "Open $(REPORTS)/index.html"

# ---------------------------------------------------------------------------------------------
# Benchmarks (bench/README.md): bench/results.{csv,md}, figures/bench_*; BENCH_QUICK=1: a < 1 min
# smoke run into quick/. Notebook times come from logs/reproduce*.log when present
# (`mkdir -p logs && make reproduce 2>&1 | tee logs/reproduce.log`).
BENCH_QUICK ?= 0
BENCH_ARGS := $(if $(filter 1,$(BENCH_QUICK)),--quick --out quick/bench --figures quick/figures,--out bench --figures figures)
bench: $(STAMP)  ## Time the Hessian diagonal, its growth and the pipeline (BENCH_QUICK=1: smoke run).
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/convnet.py $(if $(filter 1,$(BENCH_QUICK)),--quick --out quick/bench,--examples 1464 --out bench)
