# The handful of commands a learner or instructor needs. `make help` lists them.
VENV    := .venv
PY      := $(VENV)/bin/python
NBVAL   := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help setup lab test unit notebooks lint course slides colab

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## create or update .venv (CPU PyTorch without a GPU) and fetch the offline data
	@bash scripts/setup.sh

lab: setup  ## set up, then open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup  ## set up, then run every test: unit tests and strict nbval over the notebooks
	$(PY) -m pytest $(NBVAL) tests notebooks

unit: setup  ## only the unit tests (fast)
	$(PY) -m pytest tests

notebooks: setup  ## only strict nbval over the notebooks
	$(PY) -m pytest $(NBVAL) notebooks

lint: setup  ## ruff over the package, tests and notebooks
	$(VENV)/bin/ruff check .

course: setup  ## instructor mode: run every lesson, render build/course/index.html
	$(PY) scripts/build_course.py

slides: setup  ## instructor mode: the rendered course plus reveal.js slides per lesson
	$(PY) scripts/build_course.py --slides

colab: setup  ## regenerate colab/ and the Open-in-Colab badges from notebooks/
	$(PY) scripts/make_colab.py
