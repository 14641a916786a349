"""Which services should be blocked at the gateway now, and why (ARCHITECTURE.md, guarantee 7).

The one place that decides it, for the reconcile (chalicelib/enforce/reconcile.py), which makes
Kong match, and for ``GET /v1/enforcement``, which shows it. A service is blocked while its
quota has ``action: reject`` and its usage in the quota's current period is at least
``reject_at`` percent of the limit: a new period, a raised limit, a deleted quota or ``action:
warn`` end it. How a block looks at Kong (plugin, tag, message, decK file) is decided in
chalicelib/enforce/kong_plugin.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, cast

from chalicelib.core.quotas import QuotaSnapshot
from chalicelib.core.timeutil import iso
from chalicelib.core.usage import period_usage


@dataclass(frozen=True)
class Block:
    """A service that is over its reject quota in the current period."""

    service: str
    usage_bytes: int
    limit_bytes: int
    reject_at: float
    direction: str
    period_kind: str  # daily | weekly | monthly
    period_start: int
    period_end: int
    source: str  # "service" or "rule:<pattern>", as EffectiveQuota says

    def as_dict(self) -> dict:
        return {**asdict(self), "period_start": iso(self.period_start), "period_end": iso(self.period_end),
                "percent": round(100.0 * self.usage_bytes / self.limit_bytes, 1)}


def block_candidates(store, snapshot: QuotaSnapshot) -> List:
    """The service items a block may be due for: none while no quota rejects, only those with
    a rejecting quota of their own while no rule rejects, else every service (read whole)."""
    names = snapshot.rejecting_services()
    if names is None:
        return store.list_services()
    return store.get_services(sorted(names)) if names else []


def due_blocks(store, services: Iterable, snapshot: QuotaSnapshot, now: float) -> Dict[str, Block]:
    """The blocks due now, by service, from each service's usage item and the quotas."""
    due = {}
    for item in services:
        quota = snapshot.quota_for(item.service)
        if not quota.rejects:
            continue
        usage = period_usage(store, item, quota, now)
        used = usage.of(quota.direction)
        if quota.rejects_at(used):
            limit = cast(int, quota.limit_bytes)  # a quota that rejects has a limit
            due[item.service] = Block(item.service, used, limit, quota.reject_at, quota.direction,
                                      usage.period.adjective, usage.period.start, usage.period.end, quota.source)
    return due


def blocked_listing(blocks: Dict[str, Block]) -> List[dict]:
    return [blocks[name].as_dict() for name in sorted(blocks)]
