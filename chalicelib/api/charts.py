"""Chart-ready usage: time series from stored buckets, with coverage made explicit.

A point at time T covers [T, T + step). Its bytes are an integer (0 for a
collected period without traffic) or None for a period with nothing collected:
before collection or the service was first seen, inside a gap, or not final yet.
A point whose period is only partly collected (collection began inside it, it is
still filling, or a gap cuts it) holds what was collected and says ``partial``, so
a chart adds up to the same bytes at every step and to the period usage.
A chart of N points reads the N buckets of the matching level, never minutes
for long ranges; only a point still filling is summed from finer levels.

By consumer (``consumer=`` or ``split=consumer``), a point's bytes are that consumer's in a
period with consumer data, 0 when the consumer had none there, and None also where the
buckets were written before consumers were kept (nothing to tell). Consumers' bytes are summed
over routes, so they cannot be combined with a route filter or split.

Pushed bytes (chalicelib/core/pushed.py) are added to the scraped ones point by point: they are
known whatever the collector covered, so a point with pushed bytes but nothing collected shows
the pushed bytes, ``partial``. ``split=source`` gives the two apart: series ``scraped`` (as
without pushed bytes) and ``pushed`` (0 where nothing was pushed).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import List, Optional, Tuple

from chalicelib.core.errors import BadRequest, NotFound
from chalicelib.core.quotas import MAX_CONSUMER_CHARS, is_consumer_name, validate_service_name
from chalicelib.core.timeutil import LEVELS, MINUTE, TimeFormatError, floor, iso, parse_time
from chalicelib.core.usage import ANONYMOUS_CONSUMER, BucketUsage, stored_label, sum_buckets

STEPS = LEVELS  # chart steps are exactly the stored levels
AUTO_TARGET_POINTS = 1500
MAX_POINTS = 11_000


@dataclass(frozen=True)
class Coverage:
    """Which instants hold final, collected data (from the collector state)."""

    collection_start: Optional[int]
    watermark: Optional[int]
    gaps: Tuple[Tuple[int, int], ...] = ()
    first_seen: Optional[int] = None
    retained_from: Tuple[Tuple[str, int], ...] = ()  # (level, instant): older buckets have expired

    @classmethod
    def from_state(cls, state, first_seen: Optional[int] = None, retained_from: Optional[dict] = None) -> "Coverage":
        return cls(
            int(state.collection_start) if state.collection_start is not None else None,
            int(state.watermark) if state.watermark is not None else None,
            tuple((int(a), int(b)) for a, b in (state.gaps or [])),
            first_seen,
            tuple(sorted((retained_from or {}).items())),
        )

    def kept_from(self, level: str) -> Optional[int]:
        """The earliest bucket start of ``level`` still kept (None: kept for ever)."""
        return dict(self.retained_from).get(level)

    def covers(self, start: int, end: int, level: Optional[str] = None) -> bool:
        """Whether [start, end) holds final data (of ``level``, when given, which may have expired)."""
        if self.watermark is None or self.collection_start is None:
            return False
        if start < self.collection_start or end > self.watermark:
            return False
        kept_from = self.kept_from(level) if level else None
        if kept_from is not None and start < kept_from:
            return False
        if self.first_seen is not None and end <= self.first_seen:
            return False
        return not any(a < end and start < b for a, b in self.gaps)

    def collected(self, start: int, end: int, level: Optional[str] = None) -> List[Tuple[int, int]]:
        """The parts of [start, end) that hold final data, in time order ([] for none): the
        range clipped to [collection start, watermark), less the gaps."""
        if self.watermark is None or self.collection_start is None:
            return []
        kept_from = self.kept_from(level) if level else None
        if kept_from is not None and start < kept_from:
            return []  # this level's bucket has expired; finer ones went before it
        if self.first_seen is not None and end <= self.first_seen:
            return []
        parts = [(max(start, self.collection_start), min(end, self.watermark))]
        for a, b in sorted(self.gaps):
            parts = [piece for lo, hi in parts for piece in ((lo, min(hi, a)), (max(lo, b), hi))]
        return [(lo, hi) for lo, hi in parts if lo < hi]


MAX_TIME_CHARS = 40  # the longest RFC 3339 time with fractions and an offset fits well within


def _instant(params, name: str, default: int) -> int:
    """A time parameter, bounded before parsing: a 400-digit epoch would overflow float()."""
    raw = params.get(name)
    if not raw:
        return default
    if len(raw) > MAX_TIME_CHARS:
        raise BadRequest(f"{name} must be an RFC 3339 time or epoch seconds (at most {MAX_TIME_CHARS} "
                         "characters)", parameter=name)
    try:
        return parse_time(raw)
    except (TimeFormatError, OverflowError, ValueError) as e:
        raise BadRequest(f"{name}: {e}", parameter=name) from None


def parse_range(params, now: float) -> Tuple[int, int]:
    end = _instant(params, "end", int(now))
    start = _instant(params, "start", end - 3600)
    if start >= end:
        raise BadRequest("start must be before end", parameter="start")
    return start, end


def choose_step(start: int, end: int, requested: Optional[str], coverage: Optional[Coverage] = None) -> str:
    """The requested step, or for ``auto`` the finest whose points fit and whose buckets are
    still kept for the whole range (an expired level would show data as not collected)."""
    requested = requested or "auto"
    if requested == "auto":
        for name, size in STEPS.items():
            kept_from = coverage.kept_from(name) if coverage else None
            if (end - start) / size <= AUTO_TARGET_POINTS and (kept_from is None or floor(start, size) >= kept_from):
                return name
        requested = "1d"  # the coarsest; still bounded by MAX_POINTS below
    if requested not in STEPS:
        raise BadRequest(f"step must be auto or one of {', '.join(STEPS)}", parameter="step")
    points = -(-(end - start) // STEPS[requested])
    if points > MAX_POINTS:
        raise BadRequest(f"step {requested} gives {points} points for this range; at most {MAX_POINTS} "
                         "are allowed, so choose a coarser step or a shorter range", parameter="step")
    return requested


def consumer_name(raw: Optional[str]) -> Optional[str]:
    """The ``consumer=`` parameter: a Kong username (``(anonymous)`` for traffic without a
    consumer), 1 to MAX_CONSUMER_CHARS characters without control characters; None when absent."""
    if raw is None:
        return None
    if not is_consumer_name(raw):
        raise BadRequest(f"consumer must be 1 to {MAX_CONSUMER_CHARS} characters without control characters "
                         f"({ANONYMOUS_CONSUMER} for traffic without a consumer)", parameter="consumer")
    return raw


def consumer_bytes(bucket, direction: str, consumer: str) -> Optional[int]:
    """One consumer's bytes in ``bucket`` (None: the bucket has no consumer data)."""
    if bucket.consumers is None:
        return None
    entry = bucket.consumers.get(stored_label(consumer), {})
    if direction == "total":
        return entry.get("ingress", 0) + entry.get("egress", 0)
    return entry.get(direction, 0)


def bucket_bytes(bucket, direction: str, route: Optional[str]) -> int:
    if route is None:
        entries = bucket.routes.values()
    else:
        route = stored_label(route)  # a long label is stored shortened (usage.MAX_LABEL_BYTES)
        entries = [bucket.routes[route]] if route in bucket.routes else []
    if direction == "total":
        return sum(e.get("ingress", 0) + e.get("egress", 0) for e in entries)
    return sum(e.get(direction, 0) for e in entries)


@dataclass(frozen=True)
class Slot:
    """One point's period: what was collected in it (None: nothing), and whether only partly."""

    time: int
    usage: Optional[BucketUsage]
    partial: bool


def slots(store, coverage: Coverage, service: str, first: int, end: int, step: str) -> List[Slot]:
    """The step's buckets from ``first`` to ``end``, each with what was collected in it.

    A whole bucket with final data is its stored rollup (none stored: no traffic). A bucket cut by
    the collection start or a gap but complete has its rollup too, summed from the minutes that
    were collected. A bucket still filling (past the watermark) has no rollup yet: its collected
    part is summed from the finer levels (store.range_total), one such bucket per chart."""
    size = STEPS[step]
    times = list(range(first, end, size))
    buckets = {b.start: b for b in store.query_buckets(service, step, first, times[-1] + size)}
    result = []
    for t in times:
        parts = coverage.collected(t, t + size, step)
        if not parts:
            result.append(Slot(t, None, False))
        elif parts == [(t, t + size)] or t + size <= (coverage.watermark or 0):
            result.append(Slot(t, buckets.get(t) or BucketUsage(service, t), parts != [(t, t + size)]))
        else:
            minutes = [(-(-lo // MINUTE) * MINUTE, floor(hi, MINUTE)) for lo, hi in parts]
            result.append(Slot(t, sum_buckets(service, t, (store.range_total(service, lo, hi)
                                                            for lo, hi in minutes if lo < hi)), True))
    return result


SOURCES = ("scraped", "pushed")


def pushed_slots(store, service: str, found: List[Slot], step: str) -> List[Slot]:
    """The pushed bytes of each point of ``found`` (0 where nothing was pushed)."""
    pushed = getattr(store, "pushed", None)
    size = STEPS[step]
    buckets = {} if pushed is None else {
        b.start: b for b in pushed.buckets(service, step, found[0].time, found[-1].time + size)}
    return [Slot(s.time, buckets.get(s.time) or BucketUsage(service, s.time), False) for s in found]


def with_pushed(scraped: List[Slot], pushed: List[Slot]) -> List[Slot]:
    """Scraped and pushed bytes point by point (see the module's docstring)."""
    result = []
    for s, p in zip(scraped, pushed):
        if p.usage is None or not p.usage.routes:
            result.append(s)
        elif s.usage is None:
            result.append(Slot(s.time, p.usage, True))
        else:
            result.append(Slot(s.time, sum_buckets(s.usage.service, s.time, [s.usage, p.usage]), s.partial))
    return result


def build_series(store, coverage: Coverage, service: str, start: int, end: int, step: str,
                 direction: str = "all", route: Optional[str] = None, split=None,
                 consumer: Optional[str] = None) -> dict:
    """``split``: None, "route", "consumer" (True is "route", as before consumers) or "source";
    ``consumer``: the raw ``consumer=`` parameter, validated here."""
    split = "route" if split is True else (split or None)
    consumer = consumer_name(consumer)
    if (consumer is not None or split == "consumer") and (route is not None or split == "route"):
        raise BadRequest("consumer= and split=consumer cannot be combined with route= or split=route: "
                         "a consumer's bytes are kept per service, not per route",
                         parameter="consumer" if consumer is not None else "split")
    size = STEPS[step]
    first = floor(start, size)
    scraped = slots(store, coverage, service, first, end, step)
    pushed = pushed_slots(store, service, scraped, step)
    found = with_pushed(scraped, pushed)
    directions = ["ingress", "egress"] if direction == "all" else [direction]
    series = []
    if split == "source":
        for source, part in zip(SOURCES, (scraped, pushed)):
            for d in directions:
                if consumer is not None:
                    one = _series(part, d, None, consumer, lambda u, d=d: consumer_bytes(u, d, consumer))
                else:
                    one = _series(part, d, route, None, lambda u, d=d: bucket_bytes(u, d, route))
                series.append({"source": source, **one})
    elif consumer is not None or split == "consumer":
        consumers: List[str] = [consumer] if consumer is not None else sorted(
            {c for s in found if s.usage is not None and s.usage.consumers is not None for c in s.usage.consumers})
        for c in consumers:
            for d in directions:
                series.append(_series(found, d, None, c, lambda u, d=d, c=c: consumer_bytes(u, d, c)))
    else:
        routes: List[Optional[str]] = [route]
        if split == "route" and route is None:
            routes = list(sorted({r for s in found if s.usage is not None for r in s.usage.routes}))
        for r in routes:
            for d in directions:
                series.append(_series(found, d, r, None, lambda u, d=d, r=r: bucket_bytes(u, d, r)))
    return {"service": service, "start": iso(first), "end": iso(found[-1].time + size), "step": step,
            "split": split, "consumer": consumer, "series": series}


def _series(found: List[Slot], direction: str, route: Optional[str], consumer: Optional[str], nbytes) -> dict:
    points = [{"time": iso(s.time), "bytes": None if s.usage is None else nbytes(s.usage), "partial": s.partial}
              for s in found]
    return {"direction": direction, "route": route, "consumer": consumer, "points": points,
            "total_bytes": sum(p["bytes"] for p in points if p["bytes"] is not None)}


def series_csv(chart: dict) -> str:
    """One row per point. A chart by consumer has a ``consumer`` column after ``route`` (the
    others keep the columns they always had, for the readers built on them)."""
    by_consumer = chart.get("split") == "consumer" or chart.get("consumer") is not None
    by_source = chart.get("split") == "source"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "service", "direction", "route"] + (["consumer"] if by_consumer else [])
                    + (["source"] if by_source else []) + ["bytes", "partial"])
    for s in chart["series"]:
        for p in s["points"]:
            who = [csv_safe(s.get("consumer") or "")] if by_consumer else []
            who += [s["source"]] if by_source else []
            writer.writerow([p["time"], csv_safe(chart["service"]), s["direction"], csv_safe(s["route"] or "")]
                            + who + ["" if p["bytes"] is None else p["bytes"], "true" if p.get("partial") else "false"])
    return out.getvalue()


def csv_safe(value: str) -> str:
    """Guard spreadsheet formula injection: a leading = + - @ (or tab/CR) becomes text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def service_coverage(store, service: str, now: float) -> Coverage:
    """What is collected for a known service (NotFound for an unknown one), as of ``now``."""
    item = require_service(store, service)
    return Coverage.from_state(store.state_of_service(item), int(item.first_seen), store.retained_from(now))


def require_service(store, service: str):
    item = store.get_service(validate_service_name(service))
    if item is None:
        raise NotFound(f"unknown service {service!r}: no usage has been collected for it")
    return item
