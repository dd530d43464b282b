# chainaudit — every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
FORGE := node_modules/.bin/forge
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: help setup test test-py test-contracts lint demo demo-stop bench clean

help:
	@echo "make demo       set everything up, then run the demo"
	@echo "make test       set everything up, then run the whole test suite"
	@echo "make lint       ruff, mypy --strict"
	@echo "make bench      run the benchmarks in scripts/ (slow; writes reports/)"

$(PY_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NPM_STAMP)

test: setup lint test-contracts test-py

test-py: setup
	$(BIN)/pytest -q -p no:cacheprovider

test-contracts: setup
	$(FORGE) test

lint: setup
	$(BIN)/ruff check chainaudit tests scripts
	$(BIN)/ruff format --check chainaudit tests scripts
	$(BIN)/mypy --strict chainaudit

demo: setup
	$(PY) scripts/demo.py

demo-stop:
	@echo "nothing to stop"

bench: setup
	$(PY) scripts/bench_log.py

clean:
	rm -rf build out cache reports .data .pytest_cache .mypy_cache .ruff_cache
