"""Shared fixtures. Environment changes are always undone (monkeypatch), and every
server a test starts is stopped at the end of its scope."""
from __future__ import annotations

import os

import pytest

from chalicelib import bootstrap
from chalicelib.core import settings as configuration
from tests.support import speedups
from tests.support.config import BASE_VARIABLES, BOTO_ENV, Configuration

pytest_plugins = ["tests.support.servers"]

speedups.install()  # moto and botocore, made fast enough for a suite of this size

# Tiers by directory (pytest.ini describes them): a test's folder is its marker, so moving a file
# between tests/integration and tests/e2e (the slow tier: browser, local runtime, CLI
# subprocess, property tests, benchmarks) is all it takes to change its tier.
TIERS = ("unit", "integration", "e2e", "localstack")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))

# The environment the tests that read it (``env``) start from: the base settings and boto's own.
BASE_ENV = {**BASE_VARIABLES, **BOTO_ENV}


def configuration_variables() -> set:
    """Every variable that configures Bandwidth Meter (from the settings' declarations, so a new
    setting is cleared without editing this file), and boto's own AWS_* variables (credentials,
    profile), which would otherwise reach a real account."""
    return (set(configuration.variables()) | set(configuration.OTHER_VARIABLES)
            | {name for name in os.environ if name.startswith("AWS_")})


def _isolate(monkeypatch, environment):
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()


@pytest.fixture
def env(config, monkeypatch):
    """A complete, isolated configuration in the process's environment: only for the tests
    that check reading it (settings, the local runtime's defaults, strict-in-AWS); they
    override single values with monkeypatch. Every other test uses ``config`` (set up first,
    so that a test using both reads this environment)."""
    _isolate(monkeypatch, BASE_ENV)
    yield monkeypatch
    bootstrap.reset()


@pytest.fixture
def isolated(monkeypatch):
    """The process's environment holds no setting, only what boto reads (fake credentials, a
    region): a part that read its settings from there would fail for want of TABLE_NAME rather
    than pass by accident, and nothing reaches a real account."""
    _isolate(monkeypatch, BOTO_ENV)
    yield
    bootstrap.reset()


@pytest.fixture
def config(isolated):
    """The test's configuration as an object (tests/support/config.py): ``config.set(NAME=value)``
    then ``config.start(prometheus=..., clock=...)``; the environment ``isolated``."""
    return Configuration()


@pytest.fixture
def aws(config, monkeypatch):
    """moto in-process with the usage table created (unit tier); yields the base settings, the
    app started from them. Marker claims reach it through ``requests`` (it sees no aiohttp)."""
    from moto import mock_aws

    from chalicelib.core import claims, tables
    from tests.support.claims_transport import through_requests

    monkeypatch.setattr(claims, "transport", through_requests)
    with mock_aws():
        settings = config.start().settings
        tables.ensure_table()
        yield settings
