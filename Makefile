# The handful of commands a learner or instructor needs. `make help` lists them.
VENV    := .venv
PY      := $(VENV)/bin/python
# A cell may run for up to an hour: lesson 10 trains 17 models in one cell (about 10 minutes
# alone on 2 cores, longer on a busy or slower machine; nbval interrupts after 2000 s by default).
NBVAL   := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
           --nbval-cell-timeout=3600
# Another CPU, simulated: PyTorch, MKL and oneDNN capped at AVX2 (no AVX-512, no AMX), one thread.
AVX2    := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
           OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The notebooks whose outputs come from training runs (07 reads 05's model) or timings; override to pick.
TRAINING_NOTEBOOKS ?= notebooks/05_pretraining.ipynb notebooks/06_sentiment_finetuning.ipynb \
                      notebooks/07_attention_visualisation.ipynb \
                      notebooks/08_named_entities.ipynb \
                      notebooks/09_question_answering.ipynb \
                      notebooks/10_parameter_efficient_finetuning.ipynb \
                      notebooks/11_efficiency_and_scale.ipynb

.PHONY: help setup lab test unit notebooks test-avx2 lint course slides colab

help:  ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

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

test-avx2: setup  ## strict nbval over the notebooks that train, as on an AVX2 laptop with one thread
	$(AVX2) $(PY) -m pytest $(NBVAL) $(TRAINING_NOTEBOOKS)

lint: setup  ## ruff over the package, tests and notebooks
	$(VENV)/bin/ruff check .

course: setup  ## instructor mode: run every lesson, render build/course/index.html
	$(PY) scripts/build_course.py

slides: setup  ## instructor mode: the rendered course plus reveal.js slides per lesson
	$(PY) scripts/build_course.py --slides

colab: setup  ## regenerate colab/ and the Open-in-Colab badges from notebooks/
	$(PY) scripts/make_colab.py
