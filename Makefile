# Set-up is two commands (README.md): `make run` opens the workbench, `make test` runs the tests.
# Each target does only the work that is missing: the venv is rebuilt when pyproject.toml or the
# constraints change, the corpus is fetched when absent (core.corpus fetch is idempotent).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the CPU wheel; a CUDA user runs e.g. `make setup TORCH_CONSTRAINTS=constraints/cuda.txt`.
TORCH_CONSTRAINTS ?= constraints/cpu.txt
STAMP := $(VENV)/.poemtui-installed
CORPUS_STAMP := data/chinese-poetry-2.0.1/.complete
# The suite in one pytest-xdist worker per core, at most 4 (each worker runs torch on one thread and trains
# its own session fixtures); worksteal rebalances when one worker is left with the long tests.
# `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist worksteal

.PHONY: setup corpus run test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "poemtui needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(TORCH_CONSTRAINTS) -e '.[dev]'
	$(PY) -m core.lstm
	@touch $@

corpus: $(CORPUS_STAMP)

$(CORPUS_STAMP): | $(STAMP)
	$(PY) -m core.corpus fetch

run: $(STAMP) $(CORPUS_STAMP)
	$(VENV)/bin/poemtui

test: $(STAMP) $(CORPUS_STAMP)
	$(PY) -m core.lstm
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
