"""A consumer's usage in its quota period, for its quota, its alerts and its block.

The collector keeps each consumer's current-period figure in ConsumerUsage items (pk
CONSUMERS): one per collector shard, since each shard counts its own services
(collect/consumers.py). This adapter reads them as one item per consumer, the shards' figures
summed (``merged``), for the quota book's warnings, the alerts function and the enforcement, and
computes a consumer's usage in a quota period the way ``usage.usage_in`` does a service's.
"""
from __future__ import annotations

from itertools import groupby
from typing import Iterable, Iterator, List, Optional, Sequence

from chalicelib.core.models import CONSUMERS_PK, ConsumerUsage
from chalicelib.core.periods import Period, period_at
from chalicelib.core.usage import PeriodUsage, consumer_usage_in as summed_usage_in


class ConsumerUsageReader:
    """Each consumer as one ConsumerUsage item: its shards' items merged."""

    def __init__(self, store, shard_count: int = 1):
        self.store = store
        self.shard_count = max(1, shard_count)

    @property
    def sharded(self) -> bool:
        """Whether one shard's item may hold only part of a consumer's bytes."""
        return self.shard_count > 1

    def get_consumer(self, consumer: str) -> Optional[ConsumerUsage]:
        return merged(self.store, consumer, self.store.get_consumer(consumer, self.shard_count))

    def get_consumers(self, names: Iterable[str]) -> List[ConsumerUsage]:
        """These consumers (those that exist)."""
        found = self.store.get_consumers(sorted(set(names)), self.shard_count)
        return [item for name, items in sorted(found.items()) if (item := merged(self.store, name, items))]

    def list_consumers(self, after: Optional[str] = None) -> Iterator[ConsumerUsage]:
        """Every consumer in key order (after ``after``), read page by page."""
        for name, items in groupby(self.store.all_consumers(after), key=lambda item: item.consumer):
            item = merged(self.store, name, list(items))
            if item is not None:
                yield item


def merged(store, consumer: str, items: Sequence[ConsumerUsage]) -> Optional[ConsumerUsage]:
    """One item for a consumer from its shards' items (None: never counted): the period of the
    most recently counted one, with the usage of every shard in it (usage.consumer_usage_in: an
    item of an earlier period of the cycle adds nothing, one of another cycle is summed from its
    services' buckets)."""
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    latest = max(items, key=lambda item: (int(item.through), int(item.period_start)))
    period = period_at(latest.period_kind, int(latest.period_start), int(latest.period_anchor))
    summed = summed_usage_in(store, consumer, items, period)
    return ConsumerUsage(CONSUMERS_PK, consumer, consumer=consumer,
                         first_seen=min(int(item.first_seen) for item in items),
                         last_active=max(int(item.last_active) for item in items),
                         period_kind=latest.period_kind, period_anchor=int(latest.period_anchor),
                         period_start=period.start, period_end=period.end,
                         ingress=summed.usage.ingress, egress=summed.usage.egress, total=summed.usage.total,
                         through=int(latest.through),
                         services={name: {"ingress": e["ingress"], "egress": e["egress"]}
                                   for name, e in summed.services.items()})


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
