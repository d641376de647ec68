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

.PHONY: help setup test test-pythons lint format lab site sync clean reproduce study data

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
  obd-global-dropout blog_magnitude-layerwise-plain blog_magnitude-global-plain \
  blog_obd-layerwise-plain blog_obd-global-plain blog_obd-global-dropout \
  random-global-plain random-global-dropout magnitude-global-dropout

# obd.pipeline.outputs runs obd.pipeline.runner and records what each notebook wrote (REPORT.outputs.json)
RUN := $(PY) -m obd.pipeline.outputs run
comma := ,
empty :=
space := $(empty) $(empty)

# Results never go stale silently. Every notebook target depends on
#  * its notebook and every library module and data file (LIB_DEPS): editing any file under
#    lib/obd reruns every notebook (a module may be imported by any of them, directly or not);
#  * its parameter stamp, $(call params,NAME,VAR): the file $(PARAMS_DIR)/NAME.args holding the
#    runner arguments in variable VAR, rewritten when make reads this Makefile only if they
#    changed, so `make reproduce STEPS=100` or another PRUNE_ARGS reruns exactly the targets
#    whose arguments differ (and, through the reports they depend on, everything downstream).
# A new notebook rule follows the same pattern (VAR is expanded once, at eval time):
#   NAME_ARGS = notebooks/NAME.ipynb $(REPORTS)/NAME -p out $(abspath $(RESULTS))/NAME.csv ...
#   $(REPORTS)/NAME.html: notebooks/NAME.ipynb $(LIB_DEPS) $(call params,NAME,NAME_ARGS) \
#     <upstream reports> | $(STAMP)
#   	$(RUN) $(NAME_ARGS)
# Inside a define that is $(eval)ed, write $$(call params,...) so the stamp sees VAR's value.
LIB_DEPS := $(wildcard lib/obd/*.py lib/obd/*/*.py lib/obd/*/*.csv)
PARAMS_DIR := $(REPORTS)/.params
# stamps are written only when this make may run notebooks (not for `make test`, `make help`)
WRITE_PARAMS := $(filter study $(REPORTS)/%,$(MAKECMDGOALS))
streq = $(and $(findstring x$(1)x,x$(2)x),$(findstring x$(2)x,x$(1)x))
params = $(PARAMS_DIR)/$(1).args$(if $(WRITE_PARAMS),$(eval params_old := $(file <$(PARAMS_DIR)/$(1).args))$(eval params_new := $(strip $($(2))))$(if $(call streq,$(params_old),$(params_new)),,$(file >$(PARAMS_DIR)/$(1).args,$(params_new))))
ifneq ($(WRITE_PARAMS),)
$(shell mkdir -p $(PARAMS_DIR))
endif
$(PARAMS_DIR)/%.args: ;  # a missing stamp (deleted by hand) counts as changed

TRAIN_DEPS := notebooks/train.ipynb $(LIB_DEPS)
PRUNE_DEPS := notebooks/prune.ipynb $(LIB_DEPS)
COMPARE_DEPS := notebooks/compare.ipynb $(LIB_DEPS)
model_paths = [$(subst $(space),$(comma),$(foreach s,$(SEEDS),$(abspath $(RESULTS))/models/$(1)-seed$(s).npz))]

# train-<model>-seed<s>: model is plain (no dropout) or dropout (keep prob 0.8)
define train_rule
train-$(1)-seed$(2)_ARGS := notebooks/train.ipynb $(REPORTS)/train-$(1)-seed$(2) -p dropout_rate $(3) \
  -p seed $(2) -p steps $(STEPS) -p out $(abspath $(RESULTS))/models/$(1)-seed$(2).npz
$(REPORTS)/train-$(1)-seed$(2).html: $(TRAIN_DEPS) $$(call params,train-$(1)-seed$(2),train-$(1)-seed$(2)_ARGS) | $(STAMP)
	$(RUN) $$(train-$(1)-seed$(2)_ARGS)
endef
$(foreach s,$(SEEDS),$(eval $(call train_rule,plain,$(s),0.0)))
$(foreach s,$(SEEDS),$(eval $(call train_rule,dropout,$(s),0.2)))

# prune-<saliency>-<scope>-<model>: one sweep over every seed's model
define prune_rule
prune-$(1)_ARGS := notebooks/prune.ipynb $(REPORTS)/prune-$(1) -p model "$(call model_paths,$(4))" \
  -p saliency $(2) -p scope $(3) -p include_biases $(if $(filter blog_%,$(2)),true,false) \
  -p out $(abspath $(RESULTS))/sweeps/$(1).csv $(PRUNE_ARGS)
$(REPORTS)/prune-$(1).html: $(PRUNE_DEPS) $$(call params,prune-$(1),prune-$(1)_ARGS) $(foreach s,$(SEEDS),$(REPORTS)/train-$(4)-seed$(s).html) | $(STAMP)
	$(RUN) $$(prune-$(1)_ARGS)
endef
$(foreach v,$(VARIANTS),$(eval $(call prune_rule,$(v),$(word 1,$(subst -, ,$(v))),$(word 2,$(subst -, ,$(v))),$(word 3,$(subst -, ,$(v))))))
PRUNE_REPORTS := $(VARIANTS:%=$(REPORTS)/prune-%.html)

# prune-obs-layerwise-<model>: layer-wise Optimal Brain Surgeon, written as one more sweep
OBS_DEPS := notebooks/obs.ipynb $(LIB_DEPS)
ifeq ($(QUICK),1)
OBS_ARGS ?= -p calibration_examples 2000 \
  -p fractions "[0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]"
RETRAIN_ARGS ?= -p retrain_steps 500 -p hessian_examples 5000 -p oneshot_retrain false
ANALYSIS_SEEDS ?= $(firstword $(SEEDS))
endif
define obs_rule
prune-obs-layerwise-$(1)_ARGS := notebooks/obs.ipynb $(REPORTS)/prune-obs-layerwise-$(1) \
  -p model "$(call model_paths,$(1))" -p out $(abspath $(RESULTS))/sweeps/obs-layerwise-$(1).csv \
  $(OBS_ARGS)
$(REPORTS)/prune-obs-layerwise-$(1).html: $(OBS_DEPS) $$(call params,prune-obs-layerwise-$(1),prune-obs-layerwise-$(1)_ARGS) $(foreach s,$(SEEDS),$(REPORTS)/train-$(1)-seed$(s).html) | $(STAMP)
	$(RUN) $$(prune-obs-layerwise-$(1)_ARGS)
endef
$(foreach m,plain dropout,$(eval $(call obs_rule,$(m))))
PRUNE_REPORTS += $(REPORTS)/prune-obs-layerwise-plain.html $(REPORTS)/prune-obs-layerwise-dropout.html

# prune-obs-global-<model>: global OBS on exact per-unit Hessian blocks of the loss
# (notebooks/global_obs.ipynb); one run writes two sweeps, obs-global-<model> (with the OBS weight
# update) and obs_mask-global-<model> (the same ranking, mask only)
ifeq ($(QUICK),1)
GLOBAL_OBS_ARGS ?= -p hessian_examples 5000 \
  -p fractions "[0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1]"
endif
define global_obs_rule
prune-obs-global-$(1)_ARGS := notebooks/global_obs.ipynb $(REPORTS)/prune-obs-global-$(1) \
  -p model "$(call model_paths,$(1))" -p out $(abspath $(RESULTS))/sweeps/obs-global-$(1).csv \
  -p out_mask $(abspath $(RESULTS))/sweeps/obs_mask-global-$(1).csv $(GLOBAL_OBS_ARGS)
$(REPORTS)/prune-obs-global-$(1).html: notebooks/global_obs.ipynb $(LIB_DEPS) $$(call params,prune-obs-global-$(1),prune-obs-global-$(1)_ARGS) $(foreach s,$(SEEDS),$(REPORTS)/train-$(1)-seed$(s).html) | $(STAMP)
	$(RUN) $$(prune-obs-global-$(1)_ARGS)
endef
$(foreach m,plain dropout,$(eval $(call global_obs_rule,$(m))))
# the longest MLP runs first (make -j starts prerequisites in the order listed)
PRUNE_REPORTS := $(REPORTS)/prune-obs-global-plain.html $(REPORTS)/prune-obs-global-dropout.html \
  $(PRUNE_REPORTS)

compare_ARGS := notebooks/compare.ipynb $(REPORTS)/compare -p results_dir $(abspath $(RESULTS)) \
  -p figures_dir $(abspath $(FIGURES)) -p out_dir $(abspath $(RESULTS))
$(REPORTS)/compare.html: $(COMPARE_DEPS) $(call params,compare,compare_ARGS) $(PRUNE_REPORTS) | $(STAMP)
	$(RUN) $(compare_ARGS)

# Analyses beyond the blog (assumptions, curvature, retraining), on the first 3 seeds' models
# (ANALYSIS_SEEDS; QUICK: the first seed's)
ANALYSIS_DEPS := $(LIB_DEPS)
ANALYSIS_SEEDS ?= $(wordlist 1,3,$(SEEDS))
analysis_models = [$(subst $(space),$(comma),$(foreach s,$(ANALYSIS_SEEDS),$(abspath $(RESULTS))/models/$(1)-seed$(s).npz))]
ANALYSIS_TRAIN := $(foreach m,plain dropout,$(ANALYSIS_SEEDS:%=$(REPORTS)/train-$(m)-seed%.html))
ifeq ($(QUICK),1)
ASSUMPTIONS_ARGS ?= -p hessian_examples 5000 -p fractions "[0, 0.1, 0.3, 0.5, 0.7, 0.9]"
CURVATURE_ARGS ?= -p hessian_examples 5000 -p hutchinson_probes "[1, 10]" -p adam_steps 200 \
  -p fractions "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]"
endif

assumptions_ARGS := notebooks/assumptions.ipynb $(REPORTS)/assumptions \
  -p model_plain "$(call analysis_models,plain)" -p model_dropout "$(call analysis_models,dropout)" \
  -p figures_dir $(abspath $(FIGURES)) -p out $(abspath $(RESULTS))/assumptions.csv $(ASSUMPTIONS_ARGS)
$(REPORTS)/assumptions.html: notebooks/assumptions.ipynb $(ANALYSIS_DEPS) $(call params,assumptions,assumptions_ARGS) $(ANALYSIS_TRAIN) | $(STAMP)
	$(RUN) $(assumptions_ARGS)

curvature_ARGS := notebooks/curvature.ipynb $(REPORTS)/curvature -p model "$(call analysis_models,plain)" \
  -p figures_dir $(abspath $(FIGURES)) -p out $(abspath $(RESULTS))/curvature.csv $(CURVATURE_ARGS)
$(REPORTS)/curvature.html: notebooks/curvature.ipynb $(ANALYSIS_DEPS) $(call params,curvature,curvature_ARGS) $(ANALYSIS_TRAIN) | $(STAMP)
	$(RUN) $(curvature_ARGS)

retrain_ARGS := notebooks/retrain.ipynb $(REPORTS)/retrain -p model "$(call analysis_models,plain)" \
  -p out $(abspath $(RESULTS))/retrain.csv -p figures_dir $(abspath $(FIGURES)) $(RETRAIN_ARGS)
$(REPORTS)/retrain.html: notebooks/retrain.ipynb $(LIB_DEPS) $(call params,retrain,retrain_ARGS) \
  $(ANALYSIS_SEEDS:%=$(REPORTS)/train-plain-seed%.html) | $(STAMP)
	$(RUN) $(retrain_ARGS)

STUDY_REPORTS := $(REPORTS)/compare.html $(REPORTS)/assumptions.html $(REPORTS)/curvature.html \
  $(REPORTS)/retrain.html

# The blog's own checkpoints, replayed (notebooks/blog_replay.ipynb). It needs the blog's files in
# ../shared/data/blog2016 or $OBD_BLOG2016_DIR (see README); without them it is left out.
BLOG2016_DIR ?= $(or $(OBD_BLOG2016_DIR),../shared/data/blog2016)
ifeq ($(QUICK),1)
BLOG_REPLAY_ARGS ?= -p draws 1 -p permutation_draws 1 -p max_percent 3 -p overflow_batches 5 \
  -p corrected_runs "[]"
endif
blog_replay_ARGS := notebooks/blog_replay.ipynb $(REPORTS)/blog_replay \
  -p out $(abspath $(RESULTS))/blog_replay.csv -p figures_dir $(abspath $(FIGURES)) $(BLOG_REPLAY_ARGS)
$(REPORTS)/blog_replay.html: notebooks/blog_replay.ipynb $(LIB_DEPS) $(call params,blog_replay,blog_replay_ARGS) | $(STAMP)
	$(RUN) $(blog_replay_ARGS)
ifneq ($(wildcard $(BLOG2016_DIR)/run_obd_all_layers_prune/results.txt),)
STUDY_REPORTS += $(REPORTS)/blog_replay.html
endif

# The convnet study: convnet-<arch>-seed<s> trains one network and prunes it
# (notebooks/convnet.ipynb); convnet_compare gathers every seed against the published results.
# The iterative protocols were chosen on a validation split, never the test set
# (bench/retrain_protocol.py; README "Which retraining protocol?"): LeNet-300-100 "finer and
# longer" (2, 2, 3, 4, 6, 6, 6, 6 epochs of retraining after the rounds of its schedule), LeNet-5
# "longer at 12x and 20x" (1, 1, 3, 3 epochs); an epoch is 938 steps of 64 images.
LENET300_PROTOCOL := -p schedule "[0.5, 0.75, 0.875, 0.9, 0.9167, 0.93, 0.95, 0.96]" \
  -p retrain_steps "[1876, 1876, 2814, 3752, 5628, 5628, 5628, 5628]"
LENET5_PROTOCOL := -p schedule "[0.5, 0.75, 0.9167, 0.95]" -p retrain_steps "[938, 938, 2814, 2814]"
ifeq ($(QUICK),1)
CONVNET_SEEDS ?= 0
LENET5_SEEDS ?= 0
CONVNET_OBS ?= 0
CONVNET_ARGS ?= -p train_steps 300 -p fractions "[0, 0.5, 0.9]" -p hessian_examples 1000 \
  -p schedule "[0.9167]" -p retrain_steps 100 -p iterative_hessian_examples 1000
LENET5_ARGS ?= $(CONVNET_ARGS) -p learning_rate 0.002
else
CONVNET_SEEDS ?= 0 1 2
CONVNET_OBS ?= 1
LENET5_SEEDS ?= 0 1 2
CONVNET_ARGS ?= -p fractions "[0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48, 0.5, 0.52, 0.54, 0.56, 0.58, 0.6, 0.62, 0.64, 0.66, 0.68, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99]" \
  $(LENET300_PROTOCOL)
LENET5_ARGS ?= -p train_steps 1876 -p learning_rate 0.002 -p hessian_examples 5000 \
  -p fractions "[0, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.98]" \
  $(LENET5_PROTOCOL) -p iterative_hessian_examples 2000
endif
# Layer-wise OBS (CONVNET_OBS=0 leaves it out, as QUICK=1 does) and iterative pruning with
# retraining run on every seed of both networks; CONVNET_ALL_SEEDS=0 runs both on each
# network's first seed only (its other seeds trained and pruned one-shot), a shorter run.
CONVNET_ALL_SEEDS ?= 1
first_only = $(if $(and $(filter 1,$(2)),$(or $(filter 1,$(CONVNET_ALL_SEEDS)),$(filter $(firstword $(1)),$(3)))),true,false)
define convnet_rule
convnet-$(1)-seed$(2)_ARGS := notebooks/convnet.ipynb $(REPORTS)/convnet-$(1)-seed$(2) -p arch $(1) \
  -p seed $(2) -p out_dir $(abspath $(RESULTS))/convnets $(3)
$(REPORTS)/convnet-$(1)-seed$(2).html: notebooks/convnet.ipynb $(LIB_DEPS) $$(call params,convnet-$(1)-seed$(2),convnet-$(1)-seed$(2)_ARGS) | $(STAMP)
	$(RUN) $$(convnet-$(1)-seed$(2)_ARGS)
endef
$(foreach s,$(CONVNET_SEEDS),$(eval $(call convnet_rule,lenet_300_100,$(s),$(CONVNET_ARGS) \
  -p obs $(call first_only,$(CONVNET_SEEDS),$(CONVNET_OBS),$(s)))))
$(foreach s,$(LENET5_SEEDS),$(eval $(call convnet_rule,lenet5,$(s),$(LENET5_ARGS) \
  -p obs $(call first_only,$(LENET5_SEEDS),$(CONVNET_OBS),$(s)) \
  -p iterative $(call first_only,$(LENET5_SEEDS),1,$(s)))))
CONVNET_REPORTS := $(CONVNET_SEEDS:%=$(REPORTS)/convnet-lenet_300_100-seed%.html) \
  $(LENET5_SEEDS:%=$(REPORTS)/convnet-lenet5-seed%.html)

convnet_compare_ARGS := notebooks/convnet_compare.ipynb $(REPORTS)/convnet_compare \
  -p results_dir $(abspath $(RESULTS)) -p figures_dir $(abspath $(FIGURES)) -p out_dir $(abspath $(RESULTS))
$(REPORTS)/convnet_compare.html: notebooks/convnet_compare.ipynb $(LIB_DEPS) $(call params,convnet_compare,convnet_compare_ARGS) $(CONVNET_REPORTS) | $(STAMP)
	$(RUN) $(convnet_compare_ARGS)
STUDY_REPORTS += $(REPORTS)/convnet_compare.html

index_ARGS := --reports $(REPORTS) --figures $(FIGURES) --results $(RESULTS)
# LeNet-5's seeds, the longest runs, are listed first so that they start at once, and the short
# runs fill the end (make -j starts prerequisites in listed order: longest first).
$(REPORTS)/index.html: $(LENET5_SEEDS:%=$(REPORTS)/convnet-lenet5-seed%.html) \
  $(STUDY_REPORTS) $(LIB_DEPS) $(call params,index,index_ARGS) | $(STAMP)
	$(PY) -m obd.study.report $(index_ARGS)

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
# Benchmarks (bench/README.md): what the study costs and how it grows. Writes bench/results.csv,
# bench/results.md and figures/bench_*.{png,svg}; BENCH_QUICK=1 is a < 1 minute smoke run into
# quick/bench and quick/figures. Notebook times are read from logs/reproduce*.log when present
# (`mkdir -p logs && make reproduce 2>&1 | tee logs/reproduce.log`).
BENCH_QUICK ?= 0
BENCH_ARGS := $(if $(filter 1,$(BENCH_QUICK)),--quick --out quick/bench --figures quick/figures,--out bench --figures figures)
.PHONY: bench
bench: $(STAMP)  ## Time the Hessian diagonal, its growth and the pipeline (BENCH_QUICK=1: smoke run).
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/convnet.py $(if $(filter 1,$(BENCH_QUICK)),--quick --out quick/bench,--examples 1464 --out bench)
