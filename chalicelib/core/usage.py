"""Usage in the domain: bytes (and traffic statistics) of a service in a time bucket, and a
service's usage in its quota period (the one place that computes it, for the collector,
the API and the alerts function)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

from chalicelib.core.periods import Period, period_at


RouteBytes = Dict[str, Dict[str, int]]  # {route: {"ingress": n, "egress": n}}


@dataclass
class BucketUsage:
    """Bytes of one service in one bucket, per route and direction."""

    service: str
    start: int
    routes: RouteBytes = field(default_factory=dict)
    # Traffic statistics: {"codes": {"200": n}, "latency": {"buckets": {"50": n, "+Inf": n}, "sum": ms, "count": n}}
    stats: dict = field(default_factory=dict)

    def add(self, route: str, direction: str, nbytes: int) -> None:
        entry = self.routes.setdefault(route, {"ingress": 0, "egress": 0})
        entry[direction] = entry.get(direction, 0) + nbytes

    def add_status(self, code: str, count: int) -> None:
        codes = self.stats.setdefault("codes", {})
        codes[code] = codes.get(code, 0) + count

    def add_latency(self, part: str, value: float, le: Optional[str] = None) -> None:
        latency = self.stats.setdefault("latency", {"buckets": {}, "sum": 0, "count": 0})
        if le is None:
            latency[part] = latency.get(part, 0) + value
        else:
            latency["buckets"][le] = latency["buckets"].get(le, 0) + value

    def merge(self, other: "BucketUsage") -> None:
        for route, entry in other.routes.items():
            for direction, nbytes in entry.items():
                self.add(route, direction, nbytes)
        for code, count in other.stats.get("codes", {}).items():
            self.add_status(code, count)
        latency = other.stats.get("latency")
        if latency:
            for le, count in latency.get("buckets", {}).items():
                self.add_latency("buckets", count, le)
            self.add_latency("sum", latency.get("sum", 0))
            self.add_latency("count", latency.get("count", 0))

    @property
    def ingress(self) -> int:
        return sum(e.get("ingress", 0) for e in self.routes.values())

    @property
    def egress(self) -> int:
        return sum(e.get("egress", 0) for e in self.routes.values())

    @property
    def total(self) -> int:
        return self.ingress + self.egress


def sum_buckets(service: str, start: int, parts: Iterable[BucketUsage]) -> BucketUsage:
    result = BucketUsage(service, start)
    for part in parts:
        result.merge(part)
    return result


@dataclass(frozen=True)
class PeriodUsage:
    """A service's bytes in one quota period."""

    period: Period
    ingress: int
    egress: int

    @property
    def total(self) -> int:
        return self.ingress + self.egress

    def of(self, direction: str) -> int:
        return {"ingress": self.ingress, "egress": self.egress, "total": self.total}[direction]

    def as_dict(self) -> dict:
        return {"ingress": self.ingress, "egress": self.egress, "total": self.total}


def usage_in(store, item, period: Period) -> PeriodUsage:
    """Usage of the service behind ``item`` (its ServiceUsage) in ``period``.

    The collector keeps the current period's figure on the item. When the item holds an
    earlier period of the same cycle the service has been idle since (0); when it holds a
    period of another cycle (the quota changed), the period is summed from stored buckets
    up to what the collector has counted (``through``)."""
    if item.holds(period):
        return PeriodUsage(period, int(item.ingress), int(item.egress))
    if item.precedes(period):
        return PeriodUsage(period, 0, 0)
    total = store.range_total(item.service, period.start, max(period.start, min(int(item.through), period.end)))
    return PeriodUsage(period, total.ingress, total.egress)


def period_usage(store, item, quota, at: float) -> PeriodUsage:
    """Usage of a service in the period of ``quota`` that contains the instant ``at``."""
    return usage_in(store, item, period_at(quota.period, at, quota.anchor_day))
