# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATA ?= ../shared/data
APP_PORT := $(or $(STREAMLIT_SERVER_PORT),8501)
# the browser test drives Debian's Chromium (make chromium), never a downloaded one
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test chromium postgresql orthanc lint format install install-dev clean

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
	@echo "cnnlab app: open http://localhost:$(APP_PORT)  (shipped pneumonia model, plus bundles in runs/; Ctrl+C stops it)"
	$(VENV)/bin/cnnlab app --runs runs

chromium:  # for the real-browser app test; idempotent
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium)

postgresql:  # the decision store's tests start their own throwaway server; idempotent
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql)

orthanc:  # the PACS tests start their own Orthanc with its DICOMweb plugin; idempotent
	@(test -x /usr/sbin/Orthanc && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so) >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  --no-install-recommends orthanc orthanc-dicomweb)

test: $(VENV)/.installed-dev chromium postgresql orthanc
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
