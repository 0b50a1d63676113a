# Everything a fresh machine needs is installed from here: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps test lint audit runtimes unit integration e2e demo bench proto check-proto clean

$(STAMP): requirements/lock.txt proto/pyproject.toml client/pyproject.toml server/pyproject.toml trainer/pyproject.toml scripts/perf_analyzer.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet --no-deps -e ./proto -e ./client -e ./server -e ./trainer  # setuptools' notice is a warning --quiet does not reach
	$(PY) scripts/perf_analyzer.py --install  # Triton's load generator (binary from a pinned wheel)
	touch $@

install: $(STAMP)

# Debian packages the tests use (nginx for scale-out, libb64 for perf_analyzer, ...).
system-deps:
	bash scripts/install-system-deps.sh

# Lint and types, the dependency audit, the integration tests that start our server once per runtime besides the
# default (auto), then the whole suite (each runs even when another fails; any failing fails `make test`).
# The whole suite goes last so its summary is the run's closing line.
test: install system-deps
	$(MAKE) --no-print-directory lint; lint=$$?; \
	$(MAKE) --no-print-directory audit; audit=$$?; \
	$(MAKE) --no-print-directory runtimes; runtimes=$$?; \
	$(PY) -m pytest $(PYTEST_ARGS) tests; tests=$$?; exit $$(( tests || lint || audit || runtimes ))

# Every integration test that starts mnist-server, with each runtime forced (MNIST_SERVER_RUNTIME is
# --runtime's variable; tests that pass --runtime keep theirs). Trainer and bench tests start no server; the
# page's browser test and the slow-client tests exercise the HTTP side, the same whatever computes the model.
RUNTIMES ?= tensorflow litert
runtimes: install system-deps
	@status=0; for runtime in $(RUNTIMES); do \
	  echo "== integration tests with MNIST_SERVER_RUNTIME=$$runtime"; \
	  MNIST_SERVER_RUNTIME=$$runtime $(PY) -m pytest $(PYTEST_ARGS) tests/integration \
	    --ignore-glob='tests/integration/test_trainer_*' --ignore-glob='tests/integration/test_bench_*' \
	    --ignore=tests/integration/test_web_page.py --ignore=tests/integration/test_http_slow_clients.py || status=1; \
	done; exit $$status

# Lint, import order and formatting (ruff), types (mypy on the contract, client and server packages and benchmarks/);
# settings in the root pyproject.toml. `.venv/bin/ruff format .` and `ruff check --fix .` repair most findings.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known vulnerabilities in the pinned dependencies (pip-audit): fails on any; says loudly what it could
# not check (AUDIT=strict fails then too, AUDIT=off skips) - see scripts/audit-dependencies.sh.
audit: install
	PY=$(PY) bash scripts/audit-dependencies.sh

unit: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit

integration: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS) tests/integration

e2e: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS) tests/e2e

demo: install
	bash scripts/demo.sh

bench: install system-deps
	$(PY) -m benchmarks.run

proto: install
	$(PY) proto/generate.py

check-proto: install
	$(PY) -m pytest tests/unit/test_generated_code.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
