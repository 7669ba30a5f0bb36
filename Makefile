# Set-up and entry points. `make run` and `make test` each set up on a fresh machine first.
#
# TORCH pins the PyTorch wheel installed BEFORE the package, so pip never resolves
# an unpinned `torch` (which on Linux pulls a multi-GB CUDA build). The default is
# the CPU wheel this project is developed and tested with. GPU users:
#   make setup TORCH="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
# or install any CUDA torch into .venv first; `pip install -e .` keeps it.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# make run: C trained from scratch, only in the dream of the shipped TakeCover V + M (~10 min on 2 cores).
# A whole run from pixels instead: make run RUN_ARGS="--env ALE/Pong-v5 --preset tiny"
RUN_ARGS ?= --from takecover-worldmodels-cpu --preset quick
RUN_DIR ?= runs/quickstart
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/wm worldmodels $(RUN_ARGS) --run-dir $(RUN_DIR)

test: setup
	$(PY) -m pytest -q

# The import-linter contracts of pyproject.toml (layers scripts > trainers > worldmodels, no cycles);
# tests/unit/test_layers.py runs the same check inside `make test`.
lint: setup
	$(VENV)/bin/lint-imports

bench: setup
	$(VENV)/bin/wm bench --what collect

clean:
	rm -rf $(VENV) runs
