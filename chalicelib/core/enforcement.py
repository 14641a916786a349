"""Which services and consumers should be blocked at the gateway now, and why (ARCHITECTURE.md, guarantee 7).

The one place that decides it, for the reconcile (chalicelib/enforce/reconcile.py), which makes
Kong match, and for ``GET /v1/enforcement``, which shows it. A service is blocked while its
quota has ``action: reject`` and its usage in the quota's current period is at least
``reject_at`` percent of the limit: a new period, a raised limit, a deleted quota or ``action:
warn`` end it. How a block looks at Kong (plugin, tag, message, decK file) is decided in
chalicelib/enforce/kong_plugin.py.

A consumer is blocked alike, on every service, while its own quota (or a rule for consumers)
rejects and its usage across services reaches ``reject_at``; anonymous traffic never is. A
block is known by its key, ``(kind, name)``: a service and a consumer of the same name are two
blocks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, List, Tuple, cast

from chalicelib.core.consumer_usage import consumer_period_usage
from chalicelib.core.models import CONSUMER, SERVICE
from chalicelib.core.quotas import EffectiveQuota, QuotaSnapshot
from chalicelib.core.timeutil import iso
from chalicelib.core.usage import period_usage

BlockKey = Tuple[str, str]  # (kind, name): ("service", "pay"), ("consumer", "eu:alice")


@dataclass(frozen=True)
class Block:
    """A service (or a consumer: ``kind``, ``service`` then its key) over its reject quota in the current period."""

    service: str
    usage_bytes: int
    limit_bytes: int
    reject_at: float
    direction: str
    period_kind: str  # daily | weekly | monthly
    period_start: int
    period_end: int
    source: str  # "service", "consumer" or "rule:<pattern>", as EffectiveQuota says
    kind: str = SERVICE

    @property
    def key(self) -> BlockKey:
        return self.kind, self.service

    def as_dict(self) -> dict:
        """As listed and kept in the enforcement state: a consumer's block names it ``consumer``."""
        body = {**asdict(self), "period_start": iso(self.period_start), "period_end": iso(self.period_end),
                "percent": round(100.0 * self.usage_bytes / self.limit_bytes, 1)}
        if self.kind == CONSUMER:
            body = {"consumer": body.pop("service"), **body}
        return body


def entry_key(entry: dict) -> BlockKey:
    """The key of a block as the enforcement state keeps it (entries before consumers: services)."""
    if entry.get("kind") == CONSUMER:
        return CONSUMER, entry["consumer"]
    return SERVICE, entry["service"]


def entry_name(entry: dict) -> str:
    return entry_key(entry)[1]


def block_candidates(store, snapshot: QuotaSnapshot) -> List:
    """The service items a block may be due for: none while no quota rejects, only those with
    a rejecting quota of their own while no rule rejects, else every service (read whole)."""
    names = snapshot.rejecting_services()
    if names is None:
        return store.list_services()
    return store.get_services(sorted(names)) if names else []


def consumer_block_candidates(consumers, snapshot: QuotaSnapshot) -> List:
    """As block_candidates, for consumers (their usage items, read by ``consumers``)."""
    names = snapshot.rejecting_consumers()
    if names is None:
        return consumers.list_consumers()
    return consumers.get_consumers(sorted(names)) if names else []


def due_blocks(store, services: Iterable, snapshot: QuotaSnapshot, now: float) -> Dict[str, Block]:
    """The blocks due now, by service, from each service's usage item and the quotas."""
    return _due(((item.service, item, snapshot.quota_for(item.service)) for item in services),
                lambda item, quota: period_usage(store, item, quota, now), SERVICE)


def due_consumer_blocks(store, consumers: Iterable, snapshot: QuotaSnapshot, now: float) -> Dict[str, Block]:
    """The consumer blocks due now, by consumer key, from each consumer's usage item and the quotas."""
    return _due(((item.consumer, item, snapshot.quota_for_consumer(item.consumer)) for item in consumers),
                lambda item, quota: consumer_period_usage(store, item, quota, now), CONSUMER)


def _due(subjects: Iterable[Tuple[str, object, EffectiveQuota]], usage_of: Callable, kind: str) -> Dict[str, Block]:
    """(name, usage item, quota) -> the blocks due, by name: a rejecting quota whose period usage
    (``usage_of(item, quota)``) reaches its ``reject_at``."""
    due = {}
    for name, item, quota in subjects:
        if not quota.rejects:
            continue
        usage = usage_of(item, quota)
        used = usage.of(quota.direction)
        if quota.rejects_at(used):
            limit = cast(int, quota.limit_bytes)  # a quota that rejects has a limit
            due[name] = Block(name, used, limit, quota.reject_at, quota.direction, usage.period.adjective,
                              usage.period.start, usage.period.end, quota.source, kind=kind)
    return due


def all_due_blocks(store, consumers, snapshot: QuotaSnapshot, now: float) -> Dict[BlockKey, Block]:
    """Every block due now, services' and consumers', by key."""
    services = due_blocks(store, block_candidates(store, snapshot), snapshot, now)
    by_consumer = due_consumer_blocks(store, consumer_block_candidates(consumers, snapshot), snapshot, now)
    return {**{b.key: b for b in services.values()}, **{b.key: b for b in by_consumer.values()}}


def blocked_listing(blocks: Dict) -> List[dict]:
    return [blocks[key].as_dict() for key in sorted(blocks)]
