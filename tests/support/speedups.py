"""What keeps moto and botocore from dominating the suite's time, installed once a test process
(tests/conftest.py); tests/unit/test_test_harness.py holds each to moto's own answers. Measured
by profiling the suite: each of these was most of some test's time."""
from __future__ import annotations

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _share_botocore_models()
    _moto_queries_read_their_partition()
    _moto_transactions_back_up_each_table_once()
    _installed = True


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
