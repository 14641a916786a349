# Bandwidth Meter. `make run` starts the whole system locally; `make test` runs every test.
# Both install what they need: a virtualenv with requirements-dev.txt and, when absent,
# the Debian `prometheus` package (which brings promtool).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-e2e prometheus package bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

prometheus: $(STAMP)
	@$(PY) -m localrun.prometheus

run: $(STAMP)
	$(PY) -m localrun

test: $(STAMP) prometheus
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest -m unit

test-integration: $(STAMP) prometheus
	$(PY) -m pytest -m "integration and not e2e"

# The slow end-to-end checks: a real browser, schemathesis, benchmarks, the whole local runtime.
test-e2e: $(STAMP) prometheus
	$(PY) -m pytest -m e2e

package: $(STAMP)
	@bash scripts/package.sh

bench: $(STAMP) prometheus
	$(PY) bench/collector_bench.py

clean:
	rm -rf build outbox .run .pytest_cache
