# Bandwidth Meter. `make run` starts the whole system locally; `make test` runs every test.
# Both install what they need in a virtualenv: `run` only requirements-run.txt, `test` the full
# requirements-dev.txt; and, when absent, the Debian `prometheus` package (which brings promtool).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run lint test test-unit test-integration test-e2e test-dates prometheus package deploy keys bench clean

RUN_STAMP := $(VENV)/.installed-run

# The interpreter check comes first: an old Python would otherwise fail deep inside pip.
define make_venv
	@test -x $(PY) || { \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	    echo "Bandwidth Meter needs Python 3.10 or newer as $(PYTHON) ($$($(PYTHON) --version 2>&1)); try: make $(or $(MAKECMDGOALS),run) PYTHON=python3.11"; exit 1; }; \
	  echo "==> Creating a virtualenv in $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV); }
endef

# pip below 26.3: Chalice's packager (chalice package / deploy) requires it.
$(STAMP): requirements.txt requirements-run.txt requirements-dev.txt pyproject.toml
	$(make_venv)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

prometheus: $(STAMP)
	@$(PY) -m localrun.prometheus

# `make run` installs only what running needs (requirements-run.txt), saying what it fetches.
$(RUN_STAMP): requirements.txt requirements-run.txt pyproject.toml
	$(make_venv)
	@echo "==> Installing what running needs (requirements-run.txt: chalice, moto, boto3, pynamodb, bwmeter)."
	@echo "    The first time this downloads about 60 MB (85 packages) and takes a minute or two; later runs skip it."
	@$(PY) -m localrun.install requirements-run.txt
	@touch $@

# GATEWAY=kong|apisix|traefik|envoy: the development gateway speaks that gateway's metrics and
# the collector reads them (README, Other gateways); unset: kong.
run: $(RUN_STAMP)
	@echo "==> Starting Bandwidth Meter (Prometheus is installed from Debian's package first if absent)."
	GATEWAY="$(GATEWAY)" exec $(PY) -m localrun

# Parallel pytest-xdist workers, a test file at a time (a module's servers start once); 1: one process.
# Three on two cores: many tests wait on servers and subprocesses (README, Tests).
TEST_WORKERS ?= 3
PYTEST := $(PY) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# ruff on the whole repository, mypy on chalicelib/ (strict where it pays); pyproject.toml holds both.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy chalicelib

test: $(STAMP) prometheus lint
	$(PYTEST)
	@$(MAKE) --no-print-directory test-dates

# The tests that keep data at fixed times, run as if today were two minutes before a leap day
# ends (the run crosses into March 1st: a month end) and before a year ends
# (tests/support/timetravel.py): a test that reads such data with the wall clock fails.
# The slower integration ones (DATE_TESTS_ONCE) run at the first date only.
DATE_TESTS ?= tests/unit/test_periods.py tests/unit/test_alerts.py tests/unit/test_alert_logic.py \
	tests/unit/test_enforcement.py tests/unit/test_retention.py tests/unit/test_api.py \
	tests/unit/test_legacy_endpoint.py tests/unit/test_handlers.py
DATE_TESTS_ONCE ?= tests/integration/test_enforcement.py
TEST_DATES ?= 2028-02-29T23:58:00Z 2027-12-31T23:58:00Z

test-dates: $(STAMP) prometheus
	@once="$(DATE_TESTS_ONCE)"; for date in $(TEST_DATES); do \
	  echo "==> The date-sensitive tests as if it were $$date"; \
	  BWMETER_TEST_DATE=$$date $(PYTEST) -q -p tests.support.timetravel $(DATE_TESTS) $$once || exit 1; \
	  once=""; \
	done

test-unit: $(STAMP)
	$(PYTEST) -m unit

test-integration: $(STAMP) prometheus
	$(PYTEST) -m integration

# The slow tier (tests/e2e): a real browser, schemathesis and property tests, benchmarks, the CLI
# as a subprocess, the whole local runtime.
test-e2e: $(STAMP) prometheus
	$(PYTEST) -m e2e

# A package or a deployment is for a real stage: prod unless STAGE says otherwise.
STAGE ?= prod

package: $(STAMP)
	@STAGE=$(STAGE) bash scripts/package.sh

# `chalice deploy`, then the post-deploy step (scripts/post_deploy.py) that makes it match the
# CloudFormation package: preflights to the function, gateway responses with CORS, the usage
# plan; the alerts stream mapping, its failure queue, PUBLIC_URL, the alarms (docs/deploy.md).
# make deploy [STAGE=prod] [ALARM_EMAIL=ops@example.com] [PUBLIC_URL=https://bandwidth.example.com]
deploy: $(STAMP)
	$(VENV)/bin/chalice deploy --stage $(STAGE)
	$(PY) scripts/post_deploy.py --stage $(STAGE) $(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL)) \
		$(if $(PUBLIC_URL),--public-url $(PUBLIC_URL))

# API keys on either deploy path: make keys ARGS='add NAME --role read|admin --stage prod'
keys: $(STAMP)
	@$(PY) scripts/keys.py $(ARGS)

bench: $(STAMP) prometheus
	$(PY) bench/collector_bench.py

clean:
	rm -rf build outbox .run .pytest_cache
