# The README's two commands are `make serve` and `make test`; CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-postgresql services lint typecheck unit browser prometheus fuzz bench bench-scaleout bench-scrape bench-cluster clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

serve: $(VENV)/.installed
	$(BIN)/riverbed serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: services $(VENV)/.installed-test browser prometheus
	$(BIN)/pytest

# The HTTP tests that matter run a second time with their fixtures (tests/conftest.py: api,
# server) on a PostgreSQL database each instead of an SQLite file; the store contract, the
# engine tests and tests/test_postgres.py already run on PostgreSQL in `unit`.
POSTGRESQL_TESTS ?= tests/test_api.py tests/test_client.py tests/test_registry_api.py \
	tests/test_cache_api.py tests/test_jobs_server.py tests/test_compat_chantilly.py \
	tests/test_compat_chantilly_readme.py tests/test_compat_riverapi.py
test-postgresql: services $(VENV)/.installed-test
	RIVERBED_TEST_DATABASE=postgresql $(BIN)/pytest $(POSTGRESQL_TESTS)

# Debian packages the tests need, installed when their command is missing (as root in CI,
# through sudo elsewhere): $(call apt,COMMAND,PACKAGES,WHY).
apt = command -v $(1) >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing Debian's $(1) for $(3)"; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 \
	    install -y -q $(2); }

# The dashboard's tests drive Debian's headless Chromium.
browser:
	@$(call apt,chromium,chromium fonts-liberation,the dashboard's browser tests)

# tests/test_prometheus_real.py has Debian's Prometheus scrape a real server.
prometheus:
	@$(call apt,prometheus,--no-install-recommends prometheus,the scrape test)

# The services the suite talks to (Redis, PostgreSQL), the script CI runs: it starts those
# that are down when it can, else names the missing one and the command that starts it and
# stops `make test` before anything else runs. REDIS_PORT, POSTGRES_PORT (and _HOST) say
# where to look.
services:
	@bash .ci/services

test: services lint typecheck unit test-postgresql

# Not part of `make test` (which runs the same tests with a few fixed examples per route):
# tests/test_fuzz.py with FUZZ_EXAMPLES generated requests per route and configuration, new
# ones each run, through the ASGI app and against real servers. About 20 minutes on 2 cores
# at the default; a failure prints the smallest request that shows it.
FUZZ_EXAMPLES ?= 100
fuzz: $(VENV)/.installed-test
	RIVERBED_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) RIVERBED_FUZZ_RANDOM=1 \
	  $(BIN)/pytest tests/test_fuzz.py

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(VENV)/.installed $@

# Not part of `make test`: sets up wrk and the older systems, measures for a few minutes.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks

# The scale-out cluster (2 replicas + 1 learner, PostgreSQL and a Redis of its own) beside one
# riverbed process on PostgreSQL, same run, then its staleness, one learner's drain and its
# idle cost (docs/benchmarks.md, "Scale-out"; docs/scale-out.md's capacity model). `make
# bench` runs the same cells among the others.
bench-scaleout: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks --systems riverbed-postgresql,riverbed-scaleout \
	  --seconds 5 --soak 0 --no-readme --output benchmarks/results/scaleout

# What one GET /metrics costs with many models, riverbed's exposition against
# prometheus-client's rendering of the same samples, same run (docs/prometheus.md).
MODELS ?= 300
bench-scrape: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.scrape --models $(MODELS)

# One 4-candidate training job on threads and on a local Dask cluster of WORKERS workers,
# same run (docs/training.md, "On a cluster").
WORKERS ?= 2
bench-cluster: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.cluster --workers $(WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
