"""Shared fixtures. Environment changes are always undone (monkeypatch), and every
server a test starts is stopped at the end of its scope."""
from __future__ import annotations

import os

import pytest

from chalicelib import bootstrap
from chalicelib.core import settings as configuration

pytest_plugins = ["tests.support.servers"]

# Tiers by directory (pytest.ini describes them): a test's folder is its marker, so moving a file
# between tests/integration and tests/e2e (the slow tier: browser, local runtime, CLI
# subprocess, property tests, benchmarks) is all it takes to change its tier.
TIERS = ("unit", "integration", "e2e", "localstack")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))

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


def configuration_variables() -> set:
    """Every variable that configures Bandwidth Meter (from the settings' declarations, so a new
    setting is cleared without editing this file), and boto's own AWS_* variables (credentials,
    profile), which would otherwise reach a real account."""
    return (set(configuration.variables()) | set(configuration.OTHER_VARIABLES)
            | {name for name in os.environ if name.startswith("AWS_")})


@pytest.fixture
def env(monkeypatch):
    """A complete, isolated configuration; tests override single values with monkeypatch."""
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    yield monkeypatch
    bootstrap.reset()


def configure(env, **values):
    """Set these configuration values (on top of ``env``) and start the app from them, its
    models bound to the table: the parts the test then uses."""
    for name, value in values.items():
        env.setenv(name, str(value))
    bootstrap.reset()
    deps = bootstrap.current()
    deps.store  # binds the models
    return deps


@pytest.fixture
def aws(env):
    """moto in-process with the usage table created (unit tier)."""
    from moto import mock_aws

    from chalicelib.core import tables

    with mock_aws():
        settings = bootstrap.current().settings
        tables.ensure_table()
        yield settings
