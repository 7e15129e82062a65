# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATA ?= ../shared/data

.PHONY: demo test lint format install install-dev clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	@src=mnist; split=test; \
	if [ -d $(DATA)/mnist ]; then src=$(DATA)/mnist; ls $$src/t10k-* >/dev/null 2>&1 || split=val; fi; \
	$(VENV)/bin/cnnlab train recipes/mnist_fast.yaml --data $$src --out runs/demo-mnist_fast && \
	$(VENV)/bin/cnnlab evaluate runs/demo-mnist_fast --data $$src --split $$split && \
	echo "demo bundle: runs/demo-mnist_fast  (next: $(VENV)/bin/cnnlab predict runs/demo-mnist_fast IMAGE)"

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/pytest -n 2 -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
