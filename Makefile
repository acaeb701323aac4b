# The handful of commands a learner or instructor needs. `make help` lists them.
VENV    := .venv
PY      := $(VENV)/bin/python
NBVAL   := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help setup lab test unit notebooks lint

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## create or update .venv (CPU PyTorch without a GPU) and fetch the offline data
	@bash scripts/setup.sh

lab: setup  ## set up, then open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

test: setup  ## set up, then run every test: unit tests and strict nbval over the notebooks
	$(PY) -m pytest $(NBVAL) tests notebooks

unit: setup  ## only the unit tests (fast)
	$(PY) -m pytest tests

notebooks: setup  ## only strict nbval over the notebooks
	$(PY) -m pytest $(NBVAL) notebooks

lint: setup  ## ruff over the package, tests and notebooks
	$(VENV)/bin/ruff check .
