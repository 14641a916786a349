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


def series_deltas(previous: Optional[float], samples: Iterable[Tuple[float, float]]) -> Dict[int, int]:
    """Bytes per minute from one series' raw samples, given the last value before them."""
    per_minute: Dict[int, int] = defaultdict(int)
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
            per_minute[floor_minute(ts)] += int(round(delta))
    return dict(per_minute)


@dataclass
class BucketUsage:
    """Bytes of one service in one bucket, per route and direction."""

    service: str
    start: int
    routes: RouteBytes = field(default_factory=dict)

    def add(self, route: str, direction: str, nbytes: int) -> None:
        entry = self.routes.setdefault(route, {"ingress": 0, "egress": 0})
        entry[direction] = entry.get(direction, 0) + nbytes

    def merge(self, other: "BucketUsage") -> None:
        for route, entry in other.routes.items():
            for direction, nbytes in entry.items():
                self.add(route, direction, nbytes)

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

    def add(self, service: str, route: str, direction: str, per_minute: Dict[int, int]) -> None:
        for minute, nbytes in per_minute.items():
            bucket = self._usage.get((service, minute))
            if bucket is None:
                bucket = self._usage[(service, minute)] = BucketUsage(service, minute)
            bucket.add(route, direction, nbytes)

    def minutes(self) -> List[BucketUsage]:
        return sorted(self._usage.values(), key=lambda b: (b.service, b.start))

    def services(self) -> Dict[str, List[BucketUsage]]:
        by_service: Dict[str, List[BucketUsage]] = defaultdict(list)
        for bucket in self.minutes():
            by_service[bucket.service].append(bucket)
        return dict(by_service)
