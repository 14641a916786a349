# Bandwidth Meter. `make run` starts the whole system locally; `make test` runs every test.
# Both install what they need: a virtualenv with requirements-dev.txt and, when absent,
# the Debian `prometheus` package (which brings promtool).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-e2e prometheus package deploy keys bench clean

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

# A package or a deployment is for a real stage: prod unless STAGE says otherwise.
STAGE ?= prod

package: $(STAMP)
	@STAGE=$(STAGE) bash scripts/package.sh

# chalice deploy, then what Chalice does not do (preflights to the function, gateway responses
# with CORS, the usage plan): scripts/post_deploy.py
deploy: $(STAMP)
	$(VENV)/bin/chalice deploy --stage $(STAGE)
	$(PY) scripts/post_deploy.py --stage $(STAGE)

# API keys on either deploy path: make keys ARGS='add NAME --role read|admin --stage prod'
keys: $(STAMP)
	@$(PY) scripts/keys.py $(ARGS)

bench: $(STAMP) prometheus
	$(PY) bench/collector_bench.py

clean:
	rm -rf build outbox .run .pytest_cache
