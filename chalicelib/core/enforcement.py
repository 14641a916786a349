"""Which services should be blocked at the gateway now, and why (ARCHITECTURE.md, guarantee 7).

The one place that decides it, for the reconcile (chalicelib/enforce/reconcile.py), which makes
Kong match, and for ``GET /v1/enforcement``, which shows it with a decK snippet for gateways the
product cannot write to (DB-less Kong, Konnect). A service is blocked while its quota has
``action: reject`` and its usage in the quota's current period is at least ``reject_at`` percent
of the limit: a new period, a raised limit, a deleted quota or ``action: warn`` end it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List

from chalicelib.core.quotas import QuotaSnapshot
from chalicelib.core.timeutil import iso
from chalicelib.core.usage import period_usage

TAG = "bandwidth-meter"
PLUGIN = "request-termination"
BLOCK_STATUS = 429


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

    @property
    def message(self) -> str:
        """What a blocked client reads in the 429 body: the quota, and when it resets. Stable for
        the period (no running figures), so the plugin and a decK file do not churn each minute."""
        return (f"Bandwidth quota exceeded: {self.service} reached {self.reject_at:g}% of its {self.period_kind} "
                f"quota of {self.limit_bytes} bytes ({self.direction}); requests are refused until "
                f"{iso(self.period_end)}")

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
            due[item.service] = Block(item.service, used, quota.limit_bytes, quota.reject_at, quota.direction,
                                      usage.period.adjective, usage.period.start, usage.period.end, quota.source)
    return due


def deck_snippet(blocks: Iterable[Block]) -> dict:
    """A decK state file with exactly our plugins (``deck gateway sync --select-tag bandwidth-meter``
    keeps a DB-mode Kong or Konnect at it; for DB-less Kong merge it into the declarative config)."""
    return {
        "_format_version": "3.0",
        "_info": {"select_tags": [TAG]},
        "plugins": [{"name": PLUGIN, "service": b.service, "tags": [TAG],
                     "config": {"status_code": BLOCK_STATUS, "message": b.message}}
                    for b in sorted(blocks, key=lambda b: b.service)],
    }


def blocked_listing(blocks: Dict[str, Block]) -> List[dict]:
    return [blocks[name].as_dict() for name in sorted(blocks)]
