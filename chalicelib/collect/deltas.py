"""Exact usage from raw counter samples: the arithmetic at the heart of the collector.

Rules (ARCHITECTURE.md, guarantee 1):
- deltas are computed per series (instance included) from consecutive raw samples;
- a drop is a counter reset: the delta is the new value;
- a series with no earlier sample (born after collection started) counts its first value;
- a delta belongs to the minute of the later sample;
- deltas are summed across series (gateway nodes) per service, route and direction, and per
  service, consumer and direction (anonymous traffic included, so consumers add up to the service).
So any sum over whole collected minutes equals what Prometheus saw.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Tuple

from chalicelib.core.errors import BadSample
from chalicelib.core.timeutil import floor_minute
from chalicelib.core.usage import BucketUsage


def series_deltas(previous: Optional[float], samples: Iterable[Tuple[float, float]],
                  integer: bool = True) -> Dict[int, float]:
    """Counter increase per minute from one series' raw samples, given the last value before them.

    Byte and request counters are integers; a latency sum (``integer=False``) is not."""
    per_minute: Dict[int, float] = defaultdict(int)
    last = previous
    for ts, value in samples:
        if not math.isfinite(value) or value < 0:
            raise BadSample(f"sample {value!r} at {ts} cannot be a byte counter")
        if last is None or value < last:
            delta = value  # born inside the window, or reset (gateway restart)
        else:
            delta = value - last
        last = value
        if delta:
            per_minute[floor_minute(ts)] += int(round(delta)) if integer else delta
    return dict(per_minute)


class MinuteAccumulator:
    """Collects series deltas into per-service, per-minute usage."""

    def __init__(self) -> None:
        self._usage: Dict[Tuple[str, int], BucketUsage] = {}

    def _bucket(self, service: str, minute: int) -> BucketUsage:
        bucket = self._usage.get((service, minute))
        if bucket is None:
            bucket = self._usage[(service, minute)] = BucketUsage(service, minute)
        return bucket

    def add(self, service: str, route: str, direction: str, per_minute: Dict[int, int], consumer: str = "") -> None:
        """One series' bytes per minute; ``consumer`` "" is anonymous traffic."""
        for minute, nbytes in per_minute.items():
            self._bucket(service, minute).add(route, direction, nbytes, consumer)

    def add_status(self, service: str, code: str, per_minute: Dict[int, int]) -> None:
        for minute, count in per_minute.items():
            self._bucket(service, minute).add_status(code, count)

    def add_latency(self, service: str, part: str, per_minute: Dict[int, float], le: Optional[str] = None) -> None:
        for minute, value in per_minute.items():
            self._bucket(service, minute).add_latency(part, value, le)

    def consumer_minutes(self) -> List[Tuple[str, int, dict]]:
        """(service, minute, {consumer: {"ingress", "egress"}}) of every minute, not bounded:
        each consumer's exact bytes even where a stored bucket keeps only the busiest."""
        return [(service, minute, bucket.consumers) for (service, minute), bucket in sorted(self._usage.items())
                if bucket.consumers]

    def minutes(self) -> List[BucketUsage]:
        """Each service's minutes as stored (BucketUsage.bounded): the rollups the collector sums
        from these in memory then name the same routes as the minutes read back from the table."""
        return sorted((b.bounded() for b in self._usage.values()), key=lambda b: (b.service, b.start))
