"""An in-memory usage store: the ``UsageReader`` and ``UsageWriter`` ports
(chalicelib/core/ports.py) without DynamoDB, for unit tests of the alert logic and the charts.
tests/integration/test_usage_store_contract.py holds it to what ``UsageStore`` does on moto:
the same bucket bounds, level tiling, name order, checkpoint omission and lease rules."""
from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from chalicelib.core.errors import StoreError
from chalicelib.core.models import SERVICES_PK, CollectorState, ServiceUsage, collector_state_key
from chalicelib.core.store import CHECKPOINT_ATTRIBUTES, decompose
from chalicelib.core.timeutil import LEVELS
from chalicelib.core.usage import BucketUsage


class InMemoryUsageStore:
    """Buckets by (level, service, start), service items by name, collector states by shard."""

    def __init__(self, minute_ttl_days: int = 35):
        self.services: Dict[str, ServiceUsage] = {}
        self.levels: Dict[str, Dict[Tuple[str, int], BucketUsage]] = {level: {} for level in LEVELS}
        self.states_by_shard: Dict[int, CollectorState] = {}
        self.oversized: List[dict] = []  # never filled: nothing is too large for a dict
        self.writes = 0
        self._ttl_seconds = {"1m": minute_ttl_days * 86400, "5m": 4 * minute_ttl_days * 86400,
                             "15m": 4 * minute_ttl_days * 86400}

    def retained_from(self, now: float) -> Dict[str, int]:
        return {level: int(now) - ttl for level, ttl in self._ttl_seconds.items()}

    # -- usage buckets ---------------------------------------------------------------------------
    def put_buckets(self, level: str, buckets: Sequence[BucketUsage]) -> int:
        for bucket in buckets:
            self.levels[level][(bucket.service, bucket.start)] = copy.deepcopy(bucket.bounded())
        self.writes += len(buckets)
        return len(buckets)

    def get_buckets(self, level: str, keys: Iterable[Tuple[str, int]]) -> Dict[Tuple[str, int], BucketUsage]:
        stored = self.levels[level]
        return {key: copy.deepcopy(stored[key]) for key in keys if key in stored}

    def query_buckets(self, service: str, level: str, start: int, end: int) -> List[BucketUsage]:
        size = LEVELS[level]
        return [copy.deepcopy(bucket) for (name, at), bucket in sorted(self.levels[level].items())
                if name == service and start <= at and at + size <= end]

    def range_total(self, service: str, start: int, end: int) -> BucketUsage:
        result = BucketUsage(service, start)
        for lo, hi, level in decompose(start, end):
            for bucket in self.query_buckets(service, level, lo, hi):
                result.merge(bucket)
        return result

    def take_oversized(self) -> List[dict]:
        taken, self.oversized = self.oversized, []
        return taken

    # -- services --------------------------------------------------------------------------------
    def list_services(self, after: Optional[str] = None, checkpoints: bool = False) -> List[ServiceUsage]:
        items = [copy.deepcopy(self.services[name]) for name in sorted(self.services) if after is None or name > after]
        if not checkpoints:
            for item in items:
                for attribute in CHECKPOINT_ATTRIBUTES:
                    setattr(item, attribute, None)
        return items

    def get_services(self, names: Iterable[str]) -> List[ServiceUsage]:
        return [copy.deepcopy(self.services[name]) for name in dict.fromkeys(names) if name in self.services]

    def get_service(self, service: str) -> Optional[ServiceUsage]:
        item = self.services.get(service)
        return copy.deepcopy(item) if item is not None else None

    def put_services(self, items: Sequence[ServiceUsage]) -> int:
        for item in items:
            assert item.pk == SERVICES_PK, item.pk
            self.services[item.sk] = copy.deepcopy(item)
        self.writes += len(items)
        return len(items)

    # -- collector state -------------------------------------------------------------------------
    def state(self, shard: int = 0) -> CollectorState:
        stored = self.states_by_shard.get(shard)
        return copy.deepcopy(stored) if stored is not None else CollectorState(*collector_state_key(shard))

    def states(self, shard_count: int) -> List[CollectorState]:
        return [self.state(shard) for shard in range(shard_count)]

    def state_of_service(self, item: Optional[ServiceUsage]) -> CollectorState:
        shard = int(item.shard) if item is not None and item.shard is not None else 0
        state = self.state(shard)
        if shard != 0:
            state.gaps = sorted([list(g) for g in (state.gaps or [])] + [list(g) for g in (self.state(0).gaps or [])])
        return state

    def acquire_lease(self, run_id: str, now: float, lease_seconds: int, shard: int = 0) -> bool:
        state = self.state(shard)
        if state.running_since is not None and state.running_since > now - lease_seconds:
            return False
        state.running_since, state.run_id, state.last_run_start = now, run_id, now
        self.states_by_shard[shard] = state
        return True

    def update_state(self, run_id: str, shard: int = 0, **fields) -> None:
        state = self.states_by_shard.get(shard)
        if state is None or state.run_id != run_id:
            raise StoreError("the collector lease was lost to another run")
        for name, value in fields.items():
            setattr(state, name, value)


def holding(items: Sequence[ServiceUsage]) -> InMemoryUsageStore:
    """A store holding these service items (for tests that need only the services' period usage)."""
    store = InMemoryUsageStore()
    store.put_services(items)
    return store
