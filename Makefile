# Two commands do everything on a fresh machine:
#   make demo   set up, then pretrain a small GPT on the built-in corpus and sample from it
#   make test   set up, then run the test suite (tests marked slow left out; make test-all runs them too, as CI does)
# torch is installed first and pinned: the CPU wheel of 2.13.0 is what this project is tested with, and an
# unpinned torch pulls several GB of CUDA packages.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# Where torch comes from. Empty: the configured index (here, one that serves the CPU build). On an ordinary PyPI,
# torch==2.13.0 resolves to the CUDA build (a 527 MB wheel plus CUDA packages); for the CPU-only build run
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PYTEST_ARGS ?=
# `make notebooks NOTEBOOKS=notebooks/01_gpt.ipynb` runs one
NOTEBOOKS ?= notebooks/*.ipynb

.PHONY: setup demo test test-fast test-slow test-all notebooks notebooks-outputs lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/hf-bigmodel demo

# The suite a developer runs: every test except the end-to-end ones marked slow (multi-process training, Hub pushes
# through Trainer, benchmark smoke runs, torch.compile); smaller tests check the same behaviour in one process.
test: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-fast: test

# The tests marked slow alone: CI runs them after `make test`.
test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# Everything, slow tests included.
test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every notebook, executed in quick mode (HF_BIGMODEL_QUICK=1: the same code at smaller sizes) and offline; a cell's
# failed assert fails the run. CI runs this after the tests. The .ipynb files are left as they are.
notebooks: setup
	HF_BIGMODEL_QUICK=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest --nbmake --nbmake-timeout=900 --durations=0 $(PYTEST_ARGS) $(NOTEBOOKS)

# Execute notebooks at full size and write their outputs into the .ipynb files (what is committed); slow.
notebooks-outputs: setup
	env -u HF_BIGMODEL_QUICK HF_HUB_OFFLINE=1 $(BIN)/python -m pytest --nbmake --overwrite --nbmake-timeout=3600 --durations=0 $(PYTEST_ARGS) $(NOTEBOOKS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/bench_gpt_train.py
	$(BIN)/python benchmarks/bench_gpt_generate.py
	$(BIN)/python benchmarks/bench_nanogpt_recipe.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
