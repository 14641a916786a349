"""Shared fixtures. Environment changes are always undone (monkeypatch), and every
server a test starts is stopped at the end of its scope."""
from __future__ import annotations

import os

import pytest

from chalicelib import bootstrap
from chalicelib.core import settings as configuration
from tests.support.config import BASE_VARIABLES, BOTO_ENV, Configuration

pytest_plugins = ["tests.support.servers"]


class _SearchPaths(list):
    """The shared loader's search paths: boto3 appends its own data path to the loader of every
    session it makes; shared, the list would grow by one entry a session."""

    def append(self, path):
        if path not in self:
            super().append(path)


def _share_botocore_models() -> None:
    """One botocore loader for every session this test process makes. Each test starts the app
    afresh, and its PynamoDB connections and boto3 clients make new sessions; a session's own
    loader parses the service and endpoint models again (about 3 s of JSON a test). The loader
    caches what it read and holds nothing else, so sharing it changes no behaviour."""
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    loader._search_paths = _SearchPaths(loader.search_paths)
    botocore.session.create_loader = lambda search_path_string=None: loader


_share_botocore_models()


def _moto_queries_read_their_partition() -> None:
    """moto answers a table Query by sorting every item of the table and keeping the partition's:
    the collector's tests, which keep hours of minute buckets, spent most of their time there.
    While a Query on the table itself (not an index) runs, the table's items are that partition's
    alone, for the querying thread only: same results, same order (the partition is sorted by its
    range key just the same), at the partition's cost."""
    import threading

    from moto.dynamodb.models.table import Table

    scope = threading.local()
    all_items, query = Table.all_items, Table.query

    def partition_items(self):
        hash_key = getattr(scope, "hash_key", None)
        if hash_key is None:
            return all_items(self)
        partition = self.items.get(hash_key)
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    def partition_query(self, hash_key, *args, **kwargs):
        if kwargs.get("index_name") or len(args) > 6 and args[6] or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        scope.hash_key = hash_key
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            scope.hash_key = None

    Table.all_items, Table.query = partition_items, partition_query


_moto_queries_read_their_partition()


def _moto_transactions_back_up_each_table_once() -> None:
    """moto backs up a table for TransactWriteItems' rollback once per action of the transaction,
    a deep copy of the whole table each time (90 copies for a 90-item transaction: the pushed-usage
    tests spent their time there). Within one transaction every backup of a table is taken before
    any action runs, so they are equal: the first is kept for the others."""
    import copy
    import threading

    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    scope = threading.local()

    class _Copy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            backups = getattr(scope, "backups", None)
            if backups is None or not isinstance(value, Table):
                return copy.deepcopy(value, memo)
            if id(value) not in backups:
                backups[id(value)] = copy.deepcopy(value, memo)
            return backups[id(value)]

    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, *args, **kwargs):
        scope.backups = {}
        try:
            return transact(self, *args, **kwargs)
        finally:
            scope.backups = None

    models.copy = _Copy()
    models.DynamoDBBackend.transact_write_items = transact_write_items


_moto_transactions_back_up_each_table_once()

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
def aws(config):
    """moto in-process with the usage table created (unit tier); yields the base settings, the
    app started from them."""
    from moto import mock_aws

    from chalicelib.core import tables

    with mock_aws():
        settings = config.start().settings
        tables.ensure_table()
        yield settings
