"""Chart-ready usage: time series from stored buckets, with coverage made explicit.

A point at time T covers [T, T + step). Its bytes are an integer (0 for a
collected period without traffic) or None for a period not collected: before
collection or the service was first seen, inside a gap, or not final yet.
A chart of N points reads the N buckets of the matching level, never minutes
for long ranges.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import List, Optional, Tuple

from chalicelib.core.errors import BadRequest, NotFound
from chalicelib.core.quotas import validate_service_name
from chalicelib.core.timeutil import LEVELS, TimeFormatError, floor, iso, parse_time
from chalicelib.core.usage import stored_label

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


def bucket_bytes(bucket, direction: str, route: Optional[str]) -> int:
    if route is None:
        entries = bucket.routes.values()
    else:
        route = stored_label(route)  # a long label is stored shortened (usage.MAX_LABEL_BYTES)
        entries = [bucket.routes[route]] if route in bucket.routes else []
    if direction == "total":
        return sum(e.get("ingress", 0) + e.get("egress", 0) for e in entries)
    return sum(e.get(direction, 0) for e in entries)


def build_series(store, coverage: Coverage, service: str, start: int, end: int, step: str,
                 direction: str = "all", route: Optional[str] = None, split: bool = False) -> dict:
    size = STEPS[step]
    first = floor(start, size)
    times = list(range(first, end, size))
    buckets = {b.start: b for b in store.query_buckets(service, step, first, times[-1] + size)}
    covered = [coverage.covers(t, t + size, step) for t in times]
    directions = ["ingress", "egress"] if direction == "all" else [direction]
    if split:
        routes: List[Optional[str]] = [route] if route is not None else sorted(
            {r for b in buckets.values() for r in b.routes})
    else:
        routes = [route]
    series = []
    for r in routes:
        for d in directions:
            points = [{"time": iso(t), "bytes": bucket_bytes(buckets[t], d, r) if t in buckets else 0}
                      if ok else {"time": iso(t), "bytes": None} for t, ok in zip(times, covered)]
            series.append({"direction": d, "route": r, "points": points,
                           "total_bytes": sum(p["bytes"] for p in points if p["bytes"] is not None)})
    return {"service": service, "start": iso(first), "end": iso(times[-1] + size), "step": step,
            "series": series}


def series_csv(chart: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "service", "direction", "route", "bytes"])
    for s in chart["series"]:
        for p in s["points"]:
            writer.writerow([p["time"], csv_safe(chart["service"]), s["direction"], csv_safe(s["route"] or ""),
                             "" if p["bytes"] is None else p["bytes"]])
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
