"""A consumer's usage in its quota period, for its quota, its alerts and its block.

The collector keeps each consumer's current-period figure on its ConsumerUsage item (pk
CONSUMERS), exactly as it does a service's on ServiceUsage; this adapter reads those items
for the quota book's warnings, the alerts function and the enforcement, and computes a
consumer's usage in a quota period the way ``usage.usage_in`` does a service's.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List, Optional

from pynamodb.exceptions import PynamoDBException

from chalicelib.core.errors import StoreError
from chalicelib.core.models import CONSUMERS_PK, ConsumerUsage, read_item
from chalicelib.core.periods import Period, period_at
from chalicelib.core.usage import PeriodUsage

BATCH_GET = 100  # DynamoDB's BatchGetItem maximum


class ConsumerUsageReader:
    """Reads ConsumerUsage items (the collector writes them)."""

    def get_consumer(self, consumer: str) -> Optional[ConsumerUsage]:
        return read_item(ConsumerUsage, (CONSUMERS_PK, consumer), f"consumer {consumer!r}")

    def get_consumers(self, names: Iterable[str]) -> List[ConsumerUsage]:
        """These consumers' items (those that exist)."""
        keys = [(CONSUMERS_PK, name) for name in names]
        try:
            return [item for i in range(0, len(keys), BATCH_GET)
                    for item in ConsumerUsage.batch_get(keys[i:i + BATCH_GET])]
        except PynamoDBException as e:
            raise StoreError(f"reading {len(keys)} consumers failed: {e}") from e

    def list_consumers(self, after: Optional[str] = None) -> Iterator[ConsumerUsage]:
        """Every consumer item in key order (from after ``after``), read page by page."""
        try:
            yield from ConsumerUsage.query(CONSUMERS_PK, ConsumerUsage.sk > after if after else None)
        except PynamoDBException as e:
            raise StoreError(f"listing consumers failed: {e}") from e


def consumer_usage_in(store, item: ConsumerUsage, period: Period) -> PeriodUsage:
    """Usage of the consumer behind ``item`` in ``period``: the item's figure when it holds that
    period, 0 when it holds an earlier one of the same cycle (idle since); for a period of another
    cycle (the quota changed since the collector last counted it), the consumer's entries in the
    buckets of the services it used in its stored period, up to ``through``. A service it first
    used after that is counted once the collector has written the consumer in the new cycle: a
    minute later."""
    if item.holds(period):
        return PeriodUsage(period, int(item.ingress), int(item.egress))
    if item.precedes(period):
        return PeriodUsage(period, 0, 0)
    end = max(period.start, min(int(item.through), period.end))
    ingress = egress = 0
    for service in sorted(service_names(item)):
        bucket = store.range_total(service, period.start, end)
        entry = (bucket.consumers or {}).get(item.consumer) or {}
        ingress, egress = ingress + int(entry.get("ingress", 0)), egress + int(entry.get("egress", 0))
    return PeriodUsage(period, ingress, egress)


def service_names(item: ConsumerUsage) -> List[str]:
    """The services the consumer used in its stored period."""
    services = item.services
    if services is None:
        return []
    return list((services.as_dict() if hasattr(services, "as_dict") else services).keys())


def consumer_period_usage(store, item: ConsumerUsage, quota, at: float) -> PeriodUsage:
    """Usage of a consumer in the period of ``quota`` that contains the instant ``at``."""
    return consumer_usage_in(store, item, period_at(quota.period, at, quota.anchor_day))
