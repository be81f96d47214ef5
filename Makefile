# Every target sets up what it needs: the virtual environment is (re)built from
# pyproject.toml whenever it is missing or older than pyproject.toml.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.study-installed
KERNEL := $(VENV)/.study-kernel
SETUP := $(STAMP) $(KERNEL)
DESIGN ?= simulations/default.toml
JOBS ?= 2
# test processes (pytest-xdist); each test file runs in one of them
TEST_JOBS ?= 2
name_of = $(shell sed -n 's/^name *= *"\(.*\)".*/\1/p' $(1))
RESULTS ?= simulations/results/$(call name_of,$(DESIGN))
# a results folder's stamp, beside it: the run that wrote it is up to date (below)
done_stamp = $(dir $(patsubst %/,%,$(1))).$(notdir $(patsubst %/,%,$(1))).done
# The default studies are two designs: least squares (DESIGN) and logistic regression
# (LOGISTIC), whose results the report's section on logistic regression reads. With another
# DESIGN only that one runs, unless LOGISTIC is given too (LOGISTIC= runs none).
LOGISTIC ?= $(if $(filter simulations/default.toml,$(DESIGN)),simulations/logistic.toml)
LRESULTS ?= $(if $(LOGISTIC),simulations/results/$(call name_of,$(LOGISTIC)))

.PHONY: help venv simulate test test-all check report assets bench lint mutate clean

ASSETS := report/_generated/.built
OUTPUTS := report/_output/report.html report/_output/report.pdf

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,report]'
	@touch $(STAMP)

# numba compiles the engine's kernel once (some tens of seconds) into its cache, so that runs
# and their workers only load it; again whenever the kernel's source changes
$(KERNEL): study/engine/kernel.py study/engine/pencil.py study/engine/newton.py study/engine/sgd.py $(STAMP)
	$(PY) -m study.engine.kernel
	@touch $(KERNEL)

venv: $(SETUP) ## Create or update the virtual environment (.venv) from pyproject.toml

simulate: $(call done_stamp,$(RESULTS)) $(if $(LRESULTS),$(call done_stamp,$(LRESULTS))) ## Run the default studies (or DESIGN=…; JOBS=2); resumes if interrupted

# The run of one design is a file target, a stamp beside its results folder (inside it, it
# would be a file study does not own), whose prerequisites are the design and the code
# behind the run, as study/sources.py reads it from the imports (no list kept by hand):
#   design → engine (Monte Carlo) and theory, in one pool → report assets → documents
# It reruns only when one of them changed. `study simulate` computes the Monte Carlo tasks
# and the theory in one pool of JOBS workers; when only the theory's code changed (make's
# $? holds nothing else), `study theory` recomputes the theory from the checkpoints,
# without simulating. The folder's marker, which study writes first, and its manifest are
# prerequisites too, so that a deleted folder is simulated again and a folder another
# command wrote (`study simulate --no-theory`, say) is brought up to date.
# design_steps (design file, results folder) writes these rules for one design.
# Every list of sources the rules need, from one run of study/sources.py (words name:file)
SOURCES := $(shell $(PYTHON) study/sources.py engine=study/engine/run.py \
	theory=study/theory/step.py assets=study/report/assets.py render=study/report/render.py)
sources = $(patsubst $(1):%,%,$(filter $(1):%,$(SOURCES)))
ENGINE_SOURCES := $(call sources,engine)
THEORY_SOURCES := $(call sources,theory)
# the files only the theory step reads: `study theory` alone when they are all that changed
# (a test against this list, not against the design's path, which make may spell without
# a leading ./ in $?)
THEORY_ONLY := $(filter-out $(ENGINE_SOURCES),$(THEORY_SOURCES))
define design_steps
$(call done_stamp,$(2)): $(1) $(ENGINE_SOURCES) $(THEORY_SOURCES) $(2)/manifest.json $(2)/.study-results \
		| $(SETUP)
	$$(if $$(filter-out $(THEORY_ONLY),$$?),$(PY) -m study simulate $(1) --jobs $(JOBS) --out $(2),$(PY) -m study theory $(2))
	@touch $$@

$(2)/.study-results $(2)/manifest.json:
endef
$(eval $(call design_steps,$(DESIGN),$(RESULTS)))
$(if $(LRESULTS),$(eval $(call design_steps,$(LOGISTIC),$(LRESULTS))))

$(ASSETS): $(call done_stamp,$(RESULTS)) $(if $(LRESULTS),$(call done_stamp,$(LRESULTS))) \
		$(call sources,assets) | $(SETUP)
	$(PY) -m study report $(RESULTS) $(if $(LRESULTS),--logistic $(LRESULTS)) --no-render --project report
	@touch $@

$(OUTPUTS) &: $(ASSETS) report/report.qmd report/_quarto.yml report/references.bib $(call sources,render) \
		$(wildcard study/report/templates/*)
	$(PY) -m study render report

assets: $(ASSETS) ## Write the report's figures, tables and numbers from RESULTS

report: $(SETUP) $(OUTPUTS) ## Render report/_output/report.html and .pdf (simulates first if needed)

check: $(SETUP) ## Compare simulation and theory for RESULTS (default: the DESIGN's results), and LRESULTS if simulated
	$(PY) -m study check $(RESULTS) --brief
	$(if $(wildcard $(LRESULTS)/manifest.json),$(PY) -m study check $(LRESULTS) --brief)

test: $(SETUP) ## Run the test suite (without the tests marked slow)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-all: $(SETUP) ## Run every test, the slow ones too
	$(PY) -m pytest -m '' -n $(TEST_JOBS) --dist loadfile

lint: $(SETUP) ## ruff check and format check (installs the dev extra)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ruff check study tests bench mutation
	$(PY) -m ruff format --check study tests bench mutation

MUTATE_BUDGET ?= 1800
MUTATE_SEED ?= 20231201
mutate: $(SETUP) ## Mutation testing of the core modules: a random sample within MUTATE_BUDGET seconds
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) mutation/mutate.py --budget $(MUTATE_BUDGET) --jobs $(JOBS) --seed $(MUTATE_SEED)

clean: ## Remove the virtual environment, results and rendered report
	rm -rf $(VENV) simulations/results report/_generated report/_output report/_variables.yml

bench: $(SETUP) ## Benchmark the engine against scikit-learn, NumPy loops and the floor
	$(PY) bench/bench.py
