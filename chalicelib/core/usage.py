"""Usage in the domain: bytes (and traffic statistics) of a service in a time bucket, and a
service's usage in its quota period (the one place that computes it, for the collector,
the API and the alerts function)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Tuple

from chalicelib.core.periods import Period, period_at


RouteBytes = Dict[str, Dict[str, int]]  # {route: {"ingress": n, "egress": n}}
ConsumerBytes = Dict[str, Dict[str, int]]  # {consumer: {"ingress": n, "egress": n}}

# What one stored bucket item may hold. DynamoDB refuses an item over 400 KB, and a service's
# routes (and their labels) come from whoever configures the gateway, so they are unbounded:
# one item keeps at most MAX_ROUTES entries (the busiest routes by name, the rest summed into
# OTHER_ROUTES, so the service's totals stay exact), each label at most MAX_LABEL_BYTES. Worst
# case: 500 x (256 B label + 2 x (7 B name + 21 B number) + 6 B map overhead) ~ 160 KB, plus at
# most MAX_STATUS_CODES status counts (~4 KB) and a latency histogram. Consumers are bounded the
# same way (MAX_CONSUMERS, OTHER_CONSUMERS, labels shortened alike): 300 x ~290 B ~ 90 KB more,
# so the worst item (MAX routes AND MAX consumers, every label at its longest, 100 status codes, a
# latency histogram) is about 222 KB by DynamoDB's sizing rules, under 400 KB
# (tests/unit/test_item_bounds.py stores it).
MAX_ROUTES = 500
MAX_CONSUMERS = 300
MAX_STATUS_CODES = 100
MAX_LABEL_BYTES = 256
# Parentheses and spaces are not allowed in a Kong route name, so no real route is called these.
OTHER_ROUTES = "(other routes)"
# Traffic a gateway reports without a route (Kong: a service matched by no named route, route="";
# APISIX: no route matched). A usage item's routes are a map and DynamoDB keeps no empty map key,
# so such bytes stored under "" would vanish from the item's routes and its totals.
NO_ROUTE = "(no route)"
OTHER_CODES = "other"
# Traffic without a consumer (Kong 2.x has no consumer label; Kong 3.x says consumer="" without
# per_consumer or an authenticated consumer, or for a consumer that has only a custom_id) is
# counted under this name: a DynamoDB map key cannot be empty. Kong accepts any non-empty
# username, so no stored key is one Kong can never produce; the rule is that a real consumer
# literally named "(anonymous)" (or "(other consumers)") is merged with that entry. The API
# spells anonymous the same way (consumer=(anonymous)).
ANONYMOUS_CONSUMER = "(anonymous)"
OTHER_CONSUMERS = "(other consumers)"
# A consumer item (ConsumerUsage.services) keeps at most MAX_CONSUMER_SERVICES entries: the first
# MAX_CONSUMER_SERVICES - 1 services it used, by name, and OTHER_SERVICES with the bytes of any
# further one (no Kong service name holds parentheses and spaces); ~130 KB at worst.
MAX_CONSUMER_SERVICES = 500
OTHER_SERVICES = "(other services)"


def consumer_key(consumer: str) -> str:
    """The name a consumer label's value is counted under ("" is anonymous traffic)."""
    return consumer or ANONYMOUS_CONSUMER


def stored_label(label: str) -> str:
    """A route (or status) label as stored: at most MAX_LABEL_BYTES of UTF-8. A longer one keeps
    its beginning and gets a digest of the whole, so it maps to the same name in every bucket
    and two labels that differ only past the cut stay apart."""
    encoded = label.encode("utf-8")
    if len(encoded) <= MAX_LABEL_BYTES:
        return label
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    head = encoded[:MAX_LABEL_BYTES - 3 - 1 - len(digest)].decode("utf-8", "ignore")
    return f"{head}\u2026#{digest}"


def _bounded_counts(counts: Dict[str, Any], limit: int, other: str, size) -> Tuple[Dict[str, Any], int]:
    """``counts`` with labels shortened and at most ``limit`` entries: the largest by ``size``
    (ties by name, so a retry keeps the same ones) and ``other`` holding the sum of the rest."""
    shortened: Dict[str, list] = {}
    for label, value in counts.items():
        shortened.setdefault(other if label == other else stored_label(label), []).append(value)
    merged = {label: _sum_values(values) for label, values in shortened.items()}
    named = [label for label in merged if label != other]
    if len(named) + (other in merged) <= limit:
        return merged, 0
    kept = sorted(named, key=lambda label: (-size(merged[label]), label))[:limit - 1]
    kept_set = set(kept)
    spilled = [label for label in named if label not in kept_set] + ([other] if other in merged else [])
    result = {label: merged[label] for label in kept}
    result[other] = _sum_values([merged[label] for label in spilled])
    return result, len(named) - len(kept)


def _sum_values(values: list):
    if isinstance(values[0], dict):
        total: Dict[str, int] = {}
        for value in values:
            for key, n in value.items():
                total[key] = total.get(key, 0) + n
        return total
    return sum(values)


@dataclass
class BucketUsage:
    """Bytes of one service in one bucket, per route and direction, and per consumer."""

    service: str
    start: int
    routes: RouteBytes = field(default_factory=dict)
    # Traffic statistics: {"codes": {"200": n}, "latency": {"buckets": {"50": n, "+Inf": n}, "sum": ms, "count": n}}
    stats: dict = field(default_factory=dict)
    # The same bytes summed over routes per consumer (anonymous included, so they add up to the
    # routes'). None: not known, an item written before consumers were kept (or a sum with one).
    consumers: Optional[ConsumerBytes] = field(default_factory=dict)

    def add(self, route: str, direction: str, nbytes: int, consumer: str = "") -> None:
        """Bytes of one route ("" is NO_ROUTE) and consumer ("" is anonymous traffic)."""
        _add_to(self.routes, route or NO_ROUTE, direction, nbytes)
        if self.consumers is not None:
            _add_to(self.consumers, consumer_key(consumer), direction, nbytes)

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
                _add_to(self.routes, route, direction, nbytes)
        if self.consumers is not None and other.consumers is not None:
            for consumer, entry in other.consumers.items():
                for direction, nbytes in entry.items():
                    _add_to(self.consumers, consumer, direction, nbytes)
        else:
            self.consumers = None  # part of the sum has no consumer data: so has the sum
        for code, count in other.stats.get("codes", {}).items():
            self.add_status(code, count)
        latency = other.stats.get("latency")
        if latency:
            for le, count in latency.get("buckets", {}).items():
                self.add_latency("buckets", count, le)
            self.add_latency("sum", latency.get("sum", 0))
            self.add_latency("count", latency.get("count", 0))

    def bounded(self) -> "BucketUsage":
        """This bucket as one stored item may hold it (see MAX_ROUTES): same totals, same
        statistics, routes beyond the busiest MAX_ROUTES - 1 summed into OTHER_ROUTES. Bounding
        a bounded bucket (or the sum of bounded ones) again only merges, never loses bytes."""
        routes, _ = _bounded_counts(self.routes, MAX_ROUTES, OTHER_ROUTES, _entry_bytes)
        consumers = None
        if self.consumers is not None:
            consumers, _ = _bounded_counts(self.consumers, MAX_CONSUMERS, OTHER_CONSUMERS, _entry_bytes)
        stats = dict(self.stats)
        if "codes" in stats:
            stats["codes"], _ = _bounded_counts(stats["codes"], MAX_STATUS_CODES, OTHER_CODES, lambda n: n)
        return BucketUsage(self.service, self.start, routes, stats, consumers)

    @property
    def ingress(self) -> int:
        return sum(e.get("ingress", 0) for e in self.routes.values())

    @property
    def egress(self) -> int:
        return sum(e.get("egress", 0) for e in self.routes.values())

    @property
    def total(self) -> int:
        return self.ingress + self.egress


def _add_to(counts: Dict[str, Dict[str, int]], name: str, direction: str, nbytes: int) -> None:
    entry = counts.setdefault(name, {"ingress": 0, "egress": 0})
    entry[direction] = entry.get(direction, 0) + nbytes


def _entry_bytes(entry: Dict[str, int]) -> int:
    return entry.get("ingress", 0) + entry.get("egress", 0)


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
        return in_direction(direction, self.ingress, self.egress)

    def as_dict(self) -> dict:
        return {"ingress": self.ingress, "egress": self.egress, "total": self.total}


def in_direction(direction: str, ingress: int, egress: int) -> int:
    """The bytes a quota's ``direction`` (ingress, egress or total) counts."""
    return {"ingress": ingress, "egress": egress, "total": ingress + egress}[direction]


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
    """Usage of a service in the period of ``quota`` that contains the instant ``at``: what the
    collector counted (``usage_in``) plus the bytes pushed for it in that period. (``usage_in``
    stays scraped-only: the collector keeps its own figure with it.)"""
    return period_usage_and_pushed(store, item, quota, at)[0]


def period_usage_and_pushed(store, item, quota, at: float) -> Tuple[PeriodUsage, PeriodUsage]:
    """``period_usage`` and, apart, the pushed part of it (read once for both)."""
    scraped = usage_in(store, item, period_at(quota.period, at, quota.anchor_day))
    ingress, egress = pushed_in(store, item, scraped.period)
    return (PeriodUsage(scraped.period, scraped.ingress + ingress, scraped.egress + egress),
            PeriodUsage(scraped.period, ingress, egress))


def pushed_in(store, item, period: Period) -> Tuple[int, int]:
    """Bytes pushed for the service of ``item`` in ``period`` (ingress, egress), looked for only
    where the item says bytes were pushed (``pushed_at``, set by each push: its stream record is
    what alerts judge) or the list of pushed services does (the collector rewrites the item and
    may drop a ``pushed_at`` set meanwhile). A store without pushed usage (a test's fake) has none."""
    pushed = getattr(store, "pushed", None)
    if pushed is None or (getattr(item, "pushed_at", None) is None and not pushed.may_have(item.service)):
        return 0, 0
    return pushed.period_bytes(item.service, period.start, period.end)



@dataclass(frozen=True)
class ConsumerPeriodUsage:
    """A consumer's bytes in one quota period, summed over its collector shards' items, and per service."""

    usage: PeriodUsage
    services: Dict[str, Dict[str, int]]  # {service: {"ingress", "egress", "total"}}, those with bytes

    def plus(self, other: "ConsumerPeriodUsage") -> "ConsumerPeriodUsage":
        """Both together (of the same period)."""
        tally = _Tally()
        for part in (self, other):
            for service, entry in part.services.items():
                tally.add(service, entry["ingress"], entry["egress"])
        return tally.usage(self.usage.period)


class _Tally:
    """A consumer's bytes per service, and in all, as they are added."""

    def __init__(self) -> None:
        self.ingress = self.egress = 0
        self.services: Dict[str, Dict[str, int]] = {}

    def add(self, service: str, ingress: int, egress: int) -> None:
        if ingress or egress:
            entry = self.services.setdefault(service, {"ingress": 0, "egress": 0, "total": 0})
            entry["ingress"] += ingress
            entry["egress"] += egress
            entry["total"] += ingress + egress
            self.ingress, self.egress = self.ingress + ingress, self.egress + egress

    def usage(self, period: Period) -> ConsumerPeriodUsage:
        return ConsumerPeriodUsage(PeriodUsage(period, self.ingress, self.egress), self.services)


def consumer_usage_in(store, consumer: str, items, period: Period) -> ConsumerPeriodUsage:
    """Usage of ``consumer`` in ``period`` from its items (ConsumerUsage, one per collector shard).

    An item holding the period counts as stored; one holding an earlier period of the same cycle
    adds nothing (idle since); one of another cycle (the quota changed its period since the
    collector last wrote it) is summed from its services' stored buckets up to its ``through``."""
    tally = _Tally()
    for item in items:
        entries = _entries(item.services)
        if item.holds(period):
            for service, entry in entries.items():
                tally.add(service, int(entry.get("ingress", 0)), int(entry.get("egress", 0)))
        elif not item.precedes(period):
            end = max(period.start, min(int(item.through), period.end))
            for service in entries:
                found = (store.range_total(service, period.start, end).consumers or {}).get(stored_label(consumer), {})
                tally.add(service, int(found.get("ingress", 0)), int(found.get("egress", 0)))
    return tally.usage(period)


# At most this many minute items are read to bring a consumer's figure up to date (a consumer on
# 100 services, 20 minutes after its last write); beyond, its stored figure is shown as it is.
TAIL_MINUTE_ITEMS = 2000


def consumer_tail(store, consumer: str, items, period: Period, until: int,
                  limit: int = TAIL_MINUTE_ITEMS) -> ConsumerPeriodUsage:
    """What ``consumer`` did in ``period`` that its items (consumer_usage_in) do not count yet: its
    bytes in the stored minute buckets of each service its items name, from the latest of their
    guards (``through``: every earlier minute of that service is counted by one of its shards'
    items) to ``until``.
    Nothing when that takes more than ``limit`` minute items; a service it used first since its
    last write is counted from the collector's next write of it."""
    starts: Dict[str, int] = {}
    for item in items:  # an item of an earlier period counts none of this one: its guards start at period.start
        for service, entry in _entries(item.services).items():
            if service != OTHER_SERVICES:  # bytes of several services: none to read back
                starts[service] = max(starts.get(service, 0), int(entry.get("through", 0)), period.start)
    keys = [(service, minute) for service, start in sorted(starts.items())
            for minute in range(start, min(until, period.end), 60)]
    if not keys or len(keys) > limit:
        return ConsumerPeriodUsage(PeriodUsage(period, 0, 0), {})
    tally = _Tally()
    for (service, _), bucket in sorted(store.get_buckets("1m", keys).items()):
        entry = (bucket.consumers or {}).get(stored_label(consumer), {})
        tally.add(service, int(entry.get("ingress", 0)), int(entry.get("egress", 0)))
    return tally.usage(period)


def _entries(value) -> Dict[str, dict]:
    if value is None:
        return {}
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    return {k: (v.as_dict() if hasattr(v, "as_dict") else dict(v)) for k, v in value.items()}


def consumer_services(items) -> list:
    """Every service a consumer's items name (those of earlier periods too: its chart looks there), sorted."""
    return sorted({name for item in items for name in _entries(item.services)} - {OTHER_SERVICES})
