# Two commands: `make run` starts the app, `make test` runs lint, types (mypy) and the test suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run api test lint bench bench-vectorbt bench-alphalens load-test load-test-api clean system-deps

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .   # engine, api and app importable from any folder
	$(BIN)/python -m engine warmup   # compile the Numba kernels now, not on the first click
	touch $@

# Debian's Chromium for the browser test (Playwright cannot download its own browser here) and Debian's
# PostgreSQL for the `sql` source's test (the fixture starts its own server in a temporary directory).
system-deps:
	@{ command -v chromium && ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium postgresql >/dev/null; }

# MALLOC_ARENA_MAX=2: fewer glibc heaps for the server's threads, so memory freed after sessions end goes
# back to the system instead of staying fragmented across per-thread arenas (see README, Hosting).
run: $(VENV)/.installed
	MALLOC_ARENA_MAX=2 $(BIN)/python -m app --server.port $(PORT)  # the launcher: kernels compile from the start

# The HTTP API (same dataset store and run cache as the app); docs at http://127.0.0.1:8000/docs
api: $(VENV)/.installed
	$(BIN)/uvicorn api.app:app --host 127.0.0.1 --port 8000

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The second run traces the Numba kernels and metrics as plain Python (NUMBA_DISABLE_JIT=1) so their coverage counts.
test: $(VENV)/.installed system-deps lint
	$(BIN)/python -m pytest
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -o addopts="-q" --cov=engine --cov-config=tests/kernels.coveragerc \
	  --cov-report=term-missing --cov-fail-under=90 tests/test_kernel_steps.py tests/test_backtest_rules.py \
	  tests/test_sizing_risk.py tests/test_indicators.py tests/test_backtest_properties.py tests/test_metrics.py \
	  tests/test_rotation.py tests/test_row_checks.py tests/test_events.py tests/test_cross_section.py tests/test_factors.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_bare.py
	$(BIN)/python benchmarks/bench_scanner.py
	$(BIN)/python benchmarks/bench_optimize.py
	$(BIN)/python benchmarks/bench_load.py

# The same benchmarks side by side with vectorbt, in a separate venv (vectorbt is not a dependency).
bench-vectorbt:
	$(PY) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet -r requirements.txt vectorbt==1.2.0
	.venv-bench/bin/python benchmarks/bench_optimize.py
	.venv-bench/bin/python benchmarks/bench_engine.py

# alphalens-reloaded beside our factor mode, in its own venv (a peer used only for comparison).
bench-alphalens:
	$(PY) -m venv .venv-bench-alphalens
	.venv-bench-alphalens/bin/pip install --quiet -r requirements.txt alphalens-reloaded==0.5.1
	.venv-bench-alphalens/bin/python benchmarks/bench_alphalens.py

load-test: $(VENV)/.installed system-deps
	MALLOC_ARENA_MAX=2 $(BIN)/python benchmarks/load_test.py --sessions 10

# 20 concurrent API clients for 30 s against uvicorn on 127.0.0.1: latency percentiles, errors, RSS.
load-test-api: $(VENV)/.installed
	$(BIN)/python benchmarks/load_test_api.py --budgets 1024,2048,512 --clients 20 --seconds 60

clean:
	find . -name __pycache__ -prune -exec rm -rf {} + ; rm -rf .pytest_cache .ruff_cache .coverage .venv-bench
