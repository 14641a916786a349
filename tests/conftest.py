"""Shared fixtures. Environment changes are always undone (monkeypatch), and every
server a test starts is stopped at the end of its scope."""
from __future__ import annotations

import os

import pytest

from chalicelib import bootstrap
from chalicelib.core import models

pytest_plugins = ["tests.support.servers"]

BASE_ENV = {
    "TABLE_NAME": "bandwidth-meter-test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "ALERT_FROM": "alerts@bandwidth-meter.test",
    "PROMETHEUS_URL": "http://127.0.0.1:9",
    "COLLECT_LAG_SECONDS": "60",
    "STAGE": "dev",
    # botocore >= 1.40 sends stream calls to account-based hosts moto's in-process mock does not route.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


@pytest.fixture
def env(monkeypatch):
    """A complete, isolated configuration; tests override single values with monkeypatch."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PROMETHEUS_", "COLLECT_", "KONG_", "MAX_BACKFILL", "INITIAL_BACKFILL",
                            "API_KEYS", "THROTTLE_", "BWMETER_", "WEBHOOK_", "CORS_")):
            monkeypatch.delenv(name, raising=False)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    yield monkeypatch
    bootstrap.reset()


@pytest.fixture
def aws(env):
    """moto in-process with the usage table created (unit tier)."""
    from moto import mock_aws

    from chalicelib.core import tables

    with mock_aws():
        settings = bootstrap.settings()
        models.configure(settings.table_name, settings.region, None)
        tables.ensure_table()
        yield settings
