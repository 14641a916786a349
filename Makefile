# Bandwidth Meter. `make run` starts the whole system locally; `make test` runs every test.
# Both install what they need: a virtualenv with requirements-dev.txt and, when absent,
# the Debian `prometheus` package (which brings promtool).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration prometheus package deploy bench clean

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
	$(PY) -m pytest -m integration

package: $(STAMP)
	@bash scripts/package.sh

# `chalice deploy`, then the post-deploy step that makes it match the CloudFormation package
# (stream mapping, failure queue, alarms, PUBLIC_URL; see docs/deploy.md).
# make deploy STAGE=prod [ALARM_EMAIL=ops@example.com] [PUBLIC_URL=https://bandwidth.example.com]
STAGE ?= dev
deploy: $(STAMP)
	$(VENV)/bin/chalice deploy --stage $(STAGE)
	$(PY) scripts/post_deploy.py --stage $(STAGE) $(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL)) \
		$(if $(PUBLIC_URL),--public-url $(PUBLIC_URL))

bench: $(STAMP) prometheus
	$(PY) bench/collector_bench.py

clean:
	rm -rf build outbox .run .pytest_cache
