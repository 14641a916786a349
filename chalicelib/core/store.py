"""The usage store: DynamoDB reads and writes of usage, services and collector state.

Values are absolute and keys deterministic (see models.py), so writing the same
computation twice leaves the table unchanged.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError

from chalicelib.core.errors import StoreError
from chalicelib.core.models import (SERVICES_PK, STATE_KEY, CollectorState, ServiceUsage, UsageBucket, bucket_sk,
                                    is_condition_failure, usage_pk)
from chalicelib.core.timeutil import LEVEL_ORDER, LEVELS
from chalicelib.core.usage import BucketUsage

CHECKPOINT_ATTRIBUTES = ("checkpoint", "checkpoint_at", "previous_checkpoint", "previous_checkpoint_at")
LEASE_SECONDS = 900  # longer than the Lambda timeout: a dead run's lease expires by itself

def _plain(value):
    """DynamoDB maps come back as MapAttribute/Decimal; the domain wants dicts, ints and floats."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (int, float)) or hasattr(value, "as_integer_ratio"):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def _to_domain(item: UsageBucket) -> BucketUsage:
    return BucketUsage(item.service, int(item.start), _plain(item.routes or {}), _plain(item.stats or {}))


class UsageStore:
    def __init__(self, minute_ttl_days: int = 35):
        self.minute_ttl_days = minute_ttl_days
        # Finer rollups outlive minutes long enough to serve any chart that may ask for them.
        self._ttl_seconds = {"1m": minute_ttl_days * 86400, "5m": 4 * minute_ttl_days * 86400,
                             "15m": 4 * minute_ttl_days * 86400}
        self.writes = 0  # write requests' items, for status and benchmarks

    def retained_from(self, now: float) -> Dict[str, int]:
        """Per level with a TTL, the earliest bucket start still kept (older ones have expired)."""
        return {level: int(now) - ttl for level, ttl in self._ttl_seconds.items()}

    # -- usage buckets -------------------------------------------------------------------
    def _bucket_item(self, level: str, bucket: BucketUsage) -> UsageBucket:
        ttl = self._ttl_seconds.get(level)
        return UsageBucket(
            usage_pk(bucket.service), bucket_sk(level, bucket.start),
            service=bucket.service, level=level, start=bucket.start,
            ingress=bucket.ingress, egress=bucket.egress, routes=bucket.routes, stats=bucket.stats,
            expires_at=datetime.fromtimestamp(bucket.start + ttl, tz=timezone.utc) if ttl else None,
        )

    def put_buckets(self, level: str, buckets: Sequence[BucketUsage]) -> int:
        try:
            with UsageBucket.batch_write() as batch:
                for bucket in buckets:
                    batch.save(self._bucket_item(level, bucket))
        except PynamoDBException as e:
            raise StoreError(f"writing {len(buckets)} {level} usage items failed: {e}") from e
        self.writes += len(buckets)
        return len(buckets)

    def get_buckets(self, level: str, keys: Iterable[Tuple[str, int]]) -> Dict[Tuple[str, int], BucketUsage]:
        wanted = [(usage_pk(service), bucket_sk(level, start)) for service, start in keys]
        found = {}
        try:
            for item in UsageBucket.batch_get(wanted):
                found[(item.service, int(item.start))] = _to_domain(item)
        except PynamoDBException as e:
            raise StoreError(f"reading {len(wanted)} {level} usage items failed: {e}") from e
        return found

    def query_buckets(self, service: str, level: str, start: int, end: int) -> List[BucketUsage]:
        """Buckets of ``level`` with start <= bucket start < end, in time order."""
        if end <= start:
            return []
        last = end - LEVELS[level]
        if last < start:
            return []
        try:
            items = UsageBucket.query(
                usage_pk(service),
                UsageBucket.sk.between(bucket_sk(level, start), bucket_sk(level, max(start, last))),
            )
            return [_to_domain(item) for item in items]
        except PynamoDBException as e:
            raise StoreError(f"reading {level} usage of {service!r} failed: {e}") from e

    def range_total(self, service: str, start: int, end: int) -> BucketUsage:
        """Usage of a service over [start, end) (minute-aligned), read from the coarsest
        stored levels that fit: whole days, then hours, quarters, five-minutes, minutes."""
        result = BucketUsage(service, start)
        for lo, hi, level in decompose(start, end):
            for bucket in self.query_buckets(service, level, lo, hi):
                result.merge(bucket)
        return result

    # -- services ------------------------------------------------------------------------
    def list_services(self, after: Optional[str] = None, checkpoints: bool = False):
        """Every service item in name order (from after ``after``), read page by page. The
        collector's checkpoints are left out unless asked for: only the collector needs them."""
        condition = ServiceUsage.sk > after if after else None
        attributes = None if checkpoints else [name for name in ServiceUsage.get_attributes()
                                                if name not in CHECKPOINT_ATTRIBUTES]
        try:
            yield from ServiceUsage.query(SERVICES_PK, condition, attributes_to_get=attributes)
        except PynamoDBException as e:
            raise StoreError(f"listing services failed: {e}") from e

    def get_service(self, service: str) -> Optional[ServiceUsage]:
        try:
            return ServiceUsage.get(SERVICES_PK, service)
        except DoesNotExist:
            return None
        except PynamoDBException as e:
            raise StoreError(f"reading service {service!r} failed: {e}") from e

    def put_services(self, items: Sequence[ServiceUsage]) -> int:
        try:
            with ServiceUsage.batch_write() as batch:
                for item in items:
                    batch.save(item)
        except PynamoDBException as e:
            raise StoreError(f"writing {len(items)} service usage items failed: {e}") from e
        self.writes += len(items)
        return len(items)

    # -- collector state -----------------------------------------------------------------
    def state(self) -> CollectorState:
        try:
            return CollectorState.get(*STATE_KEY)
        except DoesNotExist:
            return CollectorState(*STATE_KEY)
        except PynamoDBException as e:
            raise StoreError(f"reading collector state failed: {e}") from e

    def acquire_lease(self, run_id: str, now: float, lease_seconds: int) -> bool:
        """Mark a run in progress unless another live run holds the lease."""
        state = self.state()
        if state.running_since is not None and state.running_since > now - lease_seconds:
            return False
        condition = CollectorState.run_id.does_not_exist() if state.run_id is None \
            else (CollectorState.run_id == state.run_id)
        state.running_since = now
        state.run_id = run_id
        state.last_run_start = now
        try:
            state.save(condition=condition)
        except PutError as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"taking the collector lease failed: {e}") from e
        return True

    def update_state(self, run_id: str, **fields) -> None:
        """Set state fields, only while this run holds the lease."""
        actions = [getattr(CollectorState, name).set(value) if value is not None
                   else getattr(CollectorState, name).remove() for name, value in fields.items()]
        try:
            CollectorState(*STATE_KEY).update(actions=actions, condition=CollectorState.run_id == run_id)
        except UpdateError as e:
            if is_condition_failure(e):
                raise StoreError("the collector lease was lost to another run") from e
            raise StoreError(f"updating collector state failed: {e}") from e


def decompose(start: int, end: int) -> List[Tuple[int, int, str]]:
    """Split [start, end) into runs of whole buckets, coarsest levels in the middle.

    Returns (lo, hi, level) ranges whose buckets tile [start, end) exactly."""
    if end <= start:
        return []
    for level in reversed(LEVEL_ORDER):
        size = LEVELS[level]
        lo = -(-start // size) * size
        hi = end // size * size
        if hi - lo >= size:
            return decompose(start, lo) + [(lo, hi, level)] + decompose(hi, end)
    raise ValueError(f"range [{start}, {end}) is not minute-aligned")
