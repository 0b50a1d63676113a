# Everything a fresh machine needs is installed from here: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps test audit unit integration e2e demo bench proto check-proto clean

$(STAMP): requirements/lock.txt client/pyproject.toml server/pyproject.toml trainer/pyproject.toml scripts/perf_analyzer.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps -e ./client -e ./server -e ./trainer
	$(PY) scripts/perf_analyzer.py --install  # Triton's load generator (binary from a pinned wheel)
	touch $@

install: $(STAMP)

# Debian packages the tests use (nginx for scale-out, libb64 for perf_analyzer, ...).
system-deps:
	bash scripts/install-system-deps.sh

# The dependency audit, then the tests (run even when the audit fails; either failing fails `make test`).
# pytest goes last so its summary is the run's closing line.
test: install system-deps
	$(MAKE) --no-print-directory audit; audit=$$?; $(PY) -m pytest $(PYTEST_ARGS) tests; tests=$$?; exit $$(( tests || audit ))

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
