# Reproducible OBD pruning study. `make reproduce` runs everything; `make test` checks the library.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: help setup test lint format lab clean reproduce study data

help:  ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Python 3.11 is required (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
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

clean:  ## Remove generated results and reports (keeps .venv and the committed figures/).
	rm -rf results reports quick

# ---------------------------------------------------------------------------------------------
# The study. Every notebook run is a target: its HTML report, written last and atomically, marks
# it done, so an interrupted `make reproduce` resumes where it stopped. QUICK=1 runs the whole
# pipeline with tiny settings into quick/ so it never mixes with the full results.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
QUICK ?= 0
ifeq ($(QUICK),1)
RESULTS ?= quick/results
REPORTS ?= quick/reports
FIGURES ?= quick/figures
SEEDS ?= 0 1
STEPS ?= 2000
PRUNE_ARGS ?= -p fractions "[0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]" -p hessian_examples 5000
else
RESULTS ?= results
REPORTS ?= reports
FIGURES ?= figures
SEEDS ?= 0 1 2 3 4
STEPS ?= 50000
PRUNE_ARGS ?=
endif

VARIANTS := \
  magnitude-layerwise-plain magnitude-global-plain obd-layerwise-plain obd-global-plain \
  obd-global-dropout seed_magnitude-layerwise-plain seed_magnitude-global-plain \
  seed_obd-layerwise-plain seed_obd-global-plain seed_obd-global-dropout \
  random-global-plain random-global-dropout

# obd.outputs runs obd.runner and records what each notebook wrote (REPORT.outputs.json)
RUN := $(PY) -m obd.outputs run
comma := ,
empty :=
space := $(empty) $(empty)
TRAIN_DEPS := notebooks/train.ipynb lib/obd/train.py lib/obd/model.py lib/obd/data.py
PRUNE_DEPS := notebooks/prune.ipynb lib/obd/hessian.py lib/obd/saliency.py lib/obd/prune.py \
  lib/obd/model.py lib/obd/data.py lib/obd/study.py
COMPARE_DEPS := notebooks/compare.ipynb lib/obd/study.py lib/obd/plots.py \
  lib/obd/published_blog_2016.csv
model_paths = [$(subst $(space),$(comma),$(foreach s,$(SEEDS),$(abspath $(RESULTS))/models/$(1)-seed$(s).npz))]

# train-<model>-seed<s>: model is plain (no dropout) or dropout (keep prob 0.8)
define train_rule
$(REPORTS)/train-$(1)-seed$(2).html: $(TRAIN_DEPS) | $(STAMP)
	$(RUN) notebooks/train.ipynb $(REPORTS)/train-$(1)-seed$(2) -p dropout_rate $(3) -p seed $(2) \
	  -p steps $(STEPS) -p out $(abspath $(RESULTS))/models/$(1)-seed$(2).npz
endef
$(foreach s,$(SEEDS),$(eval $(call train_rule,plain,$(s),0.0)))
$(foreach s,$(SEEDS),$(eval $(call train_rule,dropout,$(s),0.2)))

# prune-<saliency>-<scope>-<model>: one sweep over every seed's model
define prune_rule
$(REPORTS)/prune-$(1).html: $(PRUNE_DEPS) $(foreach s,$(SEEDS),$(REPORTS)/train-$(4)-seed$(s).html) | $(STAMP)
	$(RUN) notebooks/prune.ipynb $(REPORTS)/prune-$(1) -p model "$(call model_paths,$(4))" \
	  -p saliency $(2) -p scope $(3) -p include_biases $(if $(filter seed_%,$(2)),true,false) \
	  -p out $(abspath $(RESULTS))/sweeps/$(1).csv $(PRUNE_ARGS)
endef
$(foreach v,$(VARIANTS),$(eval $(call prune_rule,$(v),$(word 1,$(subst -, ,$(v))),$(word 2,$(subst -, ,$(v))),$(word 3,$(subst -, ,$(v))))))
PRUNE_REPORTS := $(VARIANTS:%=$(REPORTS)/prune-%.html)

# prune-obs-layerwise-<model>: layer-wise Optimal Brain Surgeon, written as one more sweep
OBS_DEPS := notebooks/obs.ipynb lib/obd/obs.py lib/obd/hessian.py lib/obd/saliency.py \
  lib/obd/prune.py lib/obd/model.py lib/obd/data.py lib/obd/study.py
ifeq ($(QUICK),1)
OBS_ARGS ?= -p calibration_examples 2000 \
  -p fractions "[0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]"
RETRAIN_ARGS ?= -p retrain_steps 500 -p hessian_examples 5000 -p oneshot_retrain false
endif
define obs_rule
$(REPORTS)/prune-obs-layerwise-$(1).html: $(OBS_DEPS) $(foreach s,$(SEEDS),$(REPORTS)/train-$(1)-seed$(s).html) | $(STAMP)
	$(RUN) notebooks/obs.ipynb $(REPORTS)/prune-obs-layerwise-$(1) -p model "$(call model_paths,$(1))" \
	  -p out $(abspath $(RESULTS))/sweeps/obs-layerwise-$(1).csv $(OBS_ARGS)
endef
$(foreach m,plain dropout,$(eval $(call obs_rule,$(m))))
PRUNE_REPORTS += $(REPORTS)/prune-obs-layerwise-plain.html $(REPORTS)/prune-obs-layerwise-dropout.html

$(REPORTS)/compare.html: $(COMPARE_DEPS) $(PRUNE_REPORTS) | $(STAMP)
	$(RUN) notebooks/compare.ipynb $(REPORTS)/compare -p results_dir $(abspath $(RESULTS)) \
	  -p figures_dir $(abspath $(FIGURES)) -p out_dir $(abspath $(RESULTS))

# Analyses beyond the blog, on the seed-0 models
ANALYSIS_DEPS := lib/obd/taylor.py lib/obd/curvature.py lib/obd/hessian.py lib/obd/saliency.py \
  lib/obd/prune.py lib/obd/model.py lib/obd/data.py lib/obd/plots.py lib/obd/params.py
SEED0 := $(REPORTS)/train-plain-seed$(firstword $(SEEDS)).html $(REPORTS)/train-dropout-seed$(firstword $(SEEDS)).html
model0 = $(abspath $(RESULTS))/models/$(1)-seed$(firstword $(SEEDS)).npz
ifeq ($(QUICK),1)
ASSUMPTIONS_ARGS ?= -p hessian_examples 5000 -p fractions "[0, 0.1, 0.3, 0.5, 0.7, 0.9]"
CURVATURE_ARGS ?= -p hessian_examples 5000 -p hutchinson_probes "[1, 10]" -p adam_steps 200 \
  -p fractions "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]"
endif

$(REPORTS)/assumptions.html: notebooks/assumptions.ipynb $(ANALYSIS_DEPS) $(SEED0) | $(STAMP)
	$(RUN) notebooks/assumptions.ipynb $(REPORTS)/assumptions -p model_plain $(call model0,plain) \
	  -p model_dropout $(call model0,dropout) -p figures_dir $(abspath $(FIGURES)) \
	  -p out $(abspath $(RESULTS))/assumptions.csv $(ASSUMPTIONS_ARGS)

$(REPORTS)/curvature.html: notebooks/curvature.ipynb $(ANALYSIS_DEPS) lib/obd/train.py lib/obd/study.py $(SEED0) | $(STAMP)
	$(RUN) notebooks/curvature.ipynb $(REPORTS)/curvature -p model $(call model0,plain) \
	  -p figures_dir $(abspath $(FIGURES)) -p out $(abspath $(RESULTS))/curvature.csv $(CURVATURE_ARGS)

$(REPORTS)/retrain.html: notebooks/retrain.ipynb lib/obd/retrain.py lib/obd/hessian.py \
  lib/obd/saliency.py lib/obd/prune.py lib/obd/train.py lib/obd/plots.py $(SEED0) | $(STAMP)
	$(RUN) notebooks/retrain.ipynb $(REPORTS)/retrain -p model "[$(call model0,plain)]" \
	  -p out $(abspath $(RESULTS))/retrain.csv -p figures_dir $(abspath $(FIGURES)) $(RETRAIN_ARGS)

STUDY_REPORTS := $(REPORTS)/compare.html $(REPORTS)/assumptions.html $(REPORTS)/curvature.html \
  $(REPORTS)/retrain.html

$(REPORTS)/index.html: $(STUDY_REPORTS) lib/obd/report.py | $(STAMP)
	$(PY) -m obd.report --reports $(REPORTS) --figures $(FIGURES) --results $(RESULTS)

data: $(STAMP)  ## Fetch MNIST (or find it under TFDS_DATA_DIR) and cache the decoded arrays.
	$(PY) -c "from obd.data import load_mnist; [load_mnist(s) for s in ('train', 'test')]"

study: $(REPORTS)/index.html

reproduce: data  ## Run every variant and render figures/ and reports/ (QUICK=1: tiny, into quick/).
	@$(PY) -m obd.outputs check $(REPORTS)
	@$(MAKE) --no-print-directory -j$(JOBS) study QUICK=$(QUICK)
	@echo "Open $(REPORTS)/index.html"

# ---------------------------------------------------------------------------------------------
# Benchmarks (bench/README.md): what the study costs and how it grows. Writes bench/results.csv,
# bench/results.md and figures/bench_*.{png,svg}; BENCH_QUICK=1 is a < 1 minute smoke run into
# quick/bench and quick/figures. Notebook times are read from logs/reproduce*.log when present
# (`mkdir -p logs && make reproduce 2>&1 | tee logs/reproduce.log`).
BENCH_QUICK ?= 0
BENCH_ARGS := $(if $(filter 1,$(BENCH_QUICK)),--quick --out quick/bench --figures quick/figures,--out bench --figures figures)
.PHONY: bench
bench: $(STAMP)  ## Time the Hessian diagonal, its growth and the pipeline (BENCH_QUICK=1: smoke run).
	$(PY) bench/run.py $(BENCH_ARGS)
