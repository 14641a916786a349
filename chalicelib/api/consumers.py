"""The consumers API: each consumer's usage in its quota period, a listing in pages, and its chart.

A consumer is addressed by its key (core/names.py: the Kong username, ``<workspace>:<name>``
outside the default workspace), URL-encoded in paths. Its usage is the sum of its collector
shards' items (collect/consumers.py); its chart sums its bytes (``UsageBucket.consumers``) in
the buckets of the services it used, with the services' own coverage.

The listing reads a constant number of DynamoDB items per page whatever the number of
consumers: by name, one Query of the consumers' partition; by usage or percent, the pages of the
ranking the collector refreshes every minute or ten (``ranked_at`` says when), then one BatchGet
of the page's consumers, whose values are read fresh.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from typing import Dict, List, Optional, Tuple

from chalicelib.api import charts
from chalicelib.api.overview import _cursor, _offset, percent, shown_quota
from chalicelib.collect.consumers import RANKING_PAGE
from chalicelib.core.errors import BadRequest, NotFound
from chalicelib.core.names import workspace_and_name
from chalicelib.core.periods import period_at
from chalicelib.core.quotas import validate_service_name
from chalicelib.core.timeutil import floor, iso
from chalicelib.core.usage import ANONYMOUS_CONSUMER, consumer_services, consumer_tail, consumer_usage_in, stored_label


def consumer_key(raw: str) -> str:
    """A consumer key from a path: 1 to quotas.MAX_CONSUMER_CHARS characters without control
    characters, as stored (a long one shortened like the buckets' labels)."""
    name = charts.consumer_name(raw) or ""
    if name == ANONYMOUS_CONSUMER:
        raise NotFound(f"{ANONYMOUS_CONSUMER} is traffic without a consumer, not a consumer: "
                       "see a service's chart with consumer=(anonymous)")
    return stored_label(name)


def require_consumer(store, raw: str, shard_count: int) -> Tuple[str, list]:
    consumer = consumer_key(raw)
    items = store.get_consumer(consumer, shard_count)
    if not items:
        raise NotFound(f"unknown consumer {consumer!r}: no usage has been collected for it")
    return consumer, items


def consumer_summary(store, consumer: str, items: list, quota, now: float, up_to_date: bool = False) -> dict:
    """A consumer's usage in the period its quota counts now (no quota: the calendar month): as
    its items hold it (the collector writes them every CONSUMER_WRITE_MINUTES), or ``up_to_date``
    with the stored minutes since (one consumer's page: its figure agrees with its chart)."""
    period = period_at(quota.period, now, quota.anchor_day)
    found = consumer_usage_in(store, consumer, items, period)
    if up_to_date:
        found = found.plus(consumer_tail(store, consumer, items, period, floor(int(now), 60)))
    workspace, name = workspace_and_name(consumer)
    return {
        "consumer": consumer,
        "workspace": workspace,
        "name": name,
        "usage": found.usage.as_dict(),
        "period": {"kind": period.kind, "start": iso(period.start), "end": iso(period.end)},
        "quota": shown_quota(quota),
        "percent": percent(found.usage, quota),
        "services": found.services,
        "first_seen": iso(min(int(i.first_seen) for i in items)),
        "last_active": iso(max(int(i.last_active) for i in items)),
    }


# -- the listing --------------------------------------------------------------------------------
MAX_CURSOR_CHARS = 2000  # a name cursor holds a consumer key (at most ~1,000 characters)


def _name_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"n": name}).encode()).decode()


def _after_name(cursor: Optional[str]) -> Optional[str]:
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        name = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))["n"]
    except (ValueError, KeyError, TypeError, UnicodeError, RecursionError, binascii.Error):
        name = None
    if not isinstance(name, str) or not name:
        raise BadRequest("cursor is not one this API returned (for sort=name)", parameter="cursor")
    return name


def list_consumers(store, snapshot, shard_count: int, now: float, sort: str, order: str, limit: int,
                   cursor: Optional[str]) -> dict:
    if sort == "name":
        page, more = store.consumer_page(_after_name(cursor), limit, reverse=(order == "desc"))
        names = list(page)
        rows = [consumer_summary(store, c, page[c], snapshot.quota_for_consumer(c), now) for c in names]
        meta = store.ranking_meta("usage")
        return {"consumers": rows, "total_count": int(meta.count) if meta is not None else None,
                "next_cursor": _name_cursor(names[-1]) if more and names else None,
                "sort": sort, "order": order, "ranked_at": None}
    offset = _offset(cursor)
    meta = store.ranking_meta(sort)
    if meta is None:
        return {"consumers": [], "total_count": 0, "next_cursor": None, "sort": sort, "order": order, "ranked_at": None}
    count = int(meta.count)
    # Ranking positions of the page, busiest first in the ranking; ascending reads it from the end.
    positions = [i if order == "desc" else count - 1 - i for i in range(offset, min(offset + limit, count))]
    pages = store.ranking_pages(sort, sorted({p // RANKING_PAGE for p in positions}))
    names = [pages[p // RANKING_PAGE][p % RANKING_PAGE] for p in positions
             if p // RANKING_PAGE in pages and p % RANKING_PAGE < len(pages[p // RANKING_PAGE])]
    items = store.get_consumers(names, shard_count)
    rows = [consumer_summary(store, c, items[c], snapshot.quota_for_consumer(c), now) for c in names if c in items]
    more = offset + limit < count
    return {"consumers": rows, "total_count": count, "next_cursor": _cursor(offset + limit) if more else None,
            "sort": sort, "order": order, "ranked_at": iso(float(meta.ranked_at))}


# -- the chart ----------------------------------------------------------------------------------
def consumer_chart(store, consumer: str, items: list, now: float, params, direction: str,
                   split: Optional[str]) -> dict:
    """The consumer's bytes over time, as a service's chart (charts.py: points of ``step``, 0 vs
    null, partial points), summed over the services it used; ``service=`` narrows to one,
    ``split=service`` gives one series per service."""
    services = consumer_services(items)
    narrowed = params.get("service")
    if narrowed is not None:
        narrowed = validate_service_name(narrowed)
        services = [narrowed]
    start, end = charts.parse_range(params, now)
    coverages = _coverages(store, services, now)
    if narrowed is not None and narrowed not in coverages:
        raise NotFound(f"unknown service {narrowed!r}: no usage has been collected for it")
    services = [s for s in services if s in coverages]
    step = charts.choose_step(start, end, params.get("step"), next(iter(coverages.values()), None))
    size = charts.STEPS[step]
    first = floor(start, size)
    times = list(range(first, end, size))
    found: Dict[str, List[charts.Slot]] = {s: charts.slots(store, coverages[s], s, first, end, step) for s in services}
    directions = ["ingress", "egress"] if direction == "all" else [direction]
    series = []
    groups = [[s] for s in services] if split == "service" else [services]
    for group in groups:
        for d in directions:
            points = [_point(t, [found[s][n] for s in group], d, consumer) for n, t in enumerate(times)]
            series.append({"direction": d, "service": group[0] if split == "service" else narrowed,
                           "consumer": consumer, "points": points,
                           "total_bytes": sum(p["bytes"] for p in points if p["bytes"] is not None)})
    return {"consumer": consumer, "service": narrowed, "start": iso(first), "end": iso(times[-1] + size),
            "step": step, "split": split, "series": series}


def _coverages(store, services: List[str], now: float) -> Dict[str, charts.Coverage]:
    """What is collected for each of these services (those known): their items in one BatchGet,
    each collector shard's state read once however many of its services the consumer used."""
    states: Dict[int, object] = {}
    retained = store.retained_from(now)
    found = {}
    for item in store.get_services(services):
        shard = int(item.shard) if item.shard is not None else 0
        if shard not in states:
            states[shard] = store.state_of_service(item)
        found[item.service] = charts.Coverage.from_state(states[shard], int(item.first_seen), retained)
    return found


def _point(t: int, slots: List[charts.Slot], direction: str, consumer: str) -> dict:
    """One point summed over services: null when none of them has data there (not collected,
    or buckets from before consumers were kept), partial when any is partial or lacks data."""
    known = [charts.consumer_bytes(s.usage, direction, consumer) if s.usage is not None else None for s in slots]
    values = [v for v in known if v is not None]
    partial = any(s.partial for s in slots) or (bool(values) and len(values) < len(known))
    return {"time": iso(t), "bytes": sum(values) if values else None, "partial": partial}


def chart_csv(chart: dict) -> str:
    """One row per point: time, consumer, service (empty: all its services), direction, bytes, partial."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "consumer", "service", "direction", "bytes", "partial"])
    for s in chart["series"]:
        for p in s["points"]:
            writer.writerow([p["time"], charts.csv_safe(chart["consumer"]), charts.csv_safe(s["service"] or ""),
                             s["direction"], "" if p["bytes"] is None else p["bytes"],
                             "true" if p["partial"] else "false"])
    return out.getvalue()
