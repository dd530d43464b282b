# chainaudit — every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
# slither-analyzer pins web3 < 8, which the package does not use: it lives in its own venv.
SLITHER_VENV := .venv-slither
SLITHER_STAMP := $(SLITHER_VENV)/.installed
# The npm wrapper of forge loses the exit code: always call the native binary (lazy: it
# exists only once npm ci has run).
FORGE = $(firstword $(wildcard node_modules/@foundry-rs/forge-*/bin/forge))
SNAPSHOT_FILTER := --match-path 'contracts/test/Escrow*' --no-match-test invariant

.PHONY: help setup test test-py test-contracts gas-check lint slither browser go-tlog postgres nginx demo \
	demo-stop bench fuzz clean

help:
	@echo "make demo       set everything up, then run the demo"
	@echo "make test       set everything up, then run the whole test suite"
	@echo "make lint       ruff, mypy --strict, slither"
	@echo "make bench      run the benchmarks in scripts/ (slow; writes reports/)"
	@echo "make fuzz       the fuzz tests with 100x the examples of make test (slow)"

# The install also compiles the C extensions chainaudit/_native.c and chainaudit/_seal.c (the
# latter against OpenSSL's libcrypto, whose headers Debian's libssl-dev holds): a change to
# either reinstalls.
$(PY_STAMP): pyproject.toml chainaudit/_native.c chainaudit/_seal.c
	@test -f /usr/include/openssl/evp.h || { apt-get update -qq && apt-get install -y -qq libssl-dev; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	# The locked versions, and the tracked lock file left byte for byte as it is: a plain
	# `npm install` rewrites it whenever this npm would format or annotate it differently from
	# the npm that wrote it (a dirty tree after `make demo`); `--no-save` never writes it.
	npm install --no-save --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

$(SLITHER_STAMP):
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/pip install --quiet 'slither-analyzer==0.11.6'
	touch $@

setup: $(PY_STAMP) $(NPM_STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; no browser is downloaded).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

# Debian's Go and golang.org/x/mod (sumdb/note, sumdb/tlog): tests/interop builds a checker of
# the tlog-tiles read path with them, offline in GOPATH mode.
go-tlog:
	@test -x /usr/bin/go && test -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog || \
		{ apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-mod-dev; }

# Debian's PostgreSQL server: the suite starts a private cluster of it (tests/pgserver.py)
# unless CHAINAUDIT_TEST_DATABASE_URL names a running server.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		tools/apt-install postgresql

# Debian's nginx: tests/test_deploy.py runs docs/deploy.md's site in front of the workers.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || tools/apt-install nginx-light

test: setup browser go-tlog postgres nginx lint test-contracts test-py

# Both cores: each xdist worker starts its own Anvil and PostgreSQL (free ports); the tests that
# run the demo on its fixed ports take turns (tests/demo_lock.py).
test-py: setup postgres nginx
	$(BIN)/pytest -q -p no:cacheprovider -n 2

test-contracts: setup gas-check
	$(FORGE) test

# Fails when an escrow gas figure grows more than 5% over the committed .gas-snapshot.
gas-check: setup
	$(FORGE) snapshot --check --tolerance 5 $(SNAPSHOT_FILTER)

lint: setup slither
	$(BIN)/ruff check chainaudit tests scripts
	$(BIN)/ruff format --check chainaudit tests scripts
	$(BIN)/mypy --strict chainaudit

slither: setup $(SLITHER_STAMP)
	SLITHER=$(SLITHER_VENV)/bin/slither scripts/run_slither.sh

demo: setup
	$(PY) scripts/demo.py

demo-stop:
	@test -x $(PY) && $(PY) scripts/demo.py --stop || true

bench: setup
	@command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) scripts/bench_log.py
	$(PY) scripts/bench_anchor_gas.py
	$(PY) scripts/bench_api.py
	$(PY) scripts/bench_tiles.py
	$(PY) scripts/bench_scale.py

# The fuzz tests of tests/fuzz and the schemathesis run, with a long budget (tests/fuzz/budget.py;
# `make test` runs the same tests with a small one).
fuzz: setup
	FUZZ=long $(BIN)/pytest -q -p no:cacheprovider --timeout=7200 tests/fuzz tests/api/test_schemathesis.py

# The restore drill: a live `chainaudit serve` on its own Anvil and a temporary data directory,
# backed up while appending, destroyed, restored (checked against the chain), old bundles
# verified; altered backups refused; export and import (scripts/drill.py prints each step).
.PHONY: drill
drill: setup
	$(PY) scripts/drill.py

clean:
	rm -rf build out cache reports .data .demo .pytest_cache .mypy_cache .ruff_cache
