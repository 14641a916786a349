"""Exact usage from raw counter samples: the arithmetic at the heart of the collector.

Rules (ARCHITECTURE.md, guarantee 1):
- deltas are computed per series (instance included) from consecutive raw samples;
- a drop is a counter reset: the delta is the new value;
- a series with no earlier sample (born after collection started) counts its first value;
- a delta belongs to the minute of the later sample;
- deltas are summed across series (gateway nodes) per service, route and direction.
So any sum over whole collected minutes equals what Prometheus saw.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from chalicelib.errors import BadSample
from chalicelib.prometheus import is_finite
from chalicelib.timeutil import floor_minute

RouteBytes = Dict[str, Dict[str, int]]  # {route: {"ingress": n, "egress": n}}


def series_deltas(previous: Optional[float], samples: Iterable[Tuple[float, float]],
                  integer: bool = True) -> Dict[int, float]:
    """Counter increase per minute from one series' raw samples, given the last value before them.

    Byte and request counters are integers; a latency sum (``integer=False``) is not."""
    per_minute: Dict[int, float] = defaultdict(int)
    last = previous
    for ts, value in samples:
        if not is_finite(value) or value < 0:
            raise BadSample(f"sample {value!r} at {ts} cannot be a byte counter")
        if last is None or value < last:
            delta = value  # born inside the window, or reset (gateway restart)
        else:
            delta = value - last
        last = value
        if delta:
            per_minute[floor_minute(ts)] += int(round(delta)) if integer else delta
    return dict(per_minute)


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


class MinuteAccumulator:
    """Collects series deltas into per-service, per-minute usage."""

    def __init__(self) -> None:
        self._usage: Dict[Tuple[str, int], BucketUsage] = {}

    def _bucket(self, service: str, minute: int) -> BucketUsage:
        bucket = self._usage.get((service, minute))
        if bucket is None:
            bucket = self._usage[(service, minute)] = BucketUsage(service, minute)
        return bucket

    def add(self, service: str, route: str, direction: str, per_minute: Dict[int, int]) -> None:
        for minute, nbytes in per_minute.items():
            self._bucket(service, minute).add(route, direction, nbytes)

    def add_status(self, service: str, code: str, per_minute: Dict[int, int]) -> None:
        for minute, count in per_minute.items():
            self._bucket(service, minute).add_status(code, count)

    def add_latency(self, service: str, part: str, per_minute: Dict[int, float], le: Optional[str] = None) -> None:
        for minute, value in per_minute.items():
            self._bucket(service, minute).add_latency(part, value, le)

    def minutes(self) -> List[BucketUsage]:
        return sorted(self._usage.values(), key=lambda b: (b.service, b.start))
