"""Gateway traffic statistics from stored counts: success/error requests and latency quantiles.

Quantiles are interpolated linearly within the histogram bucket that holds the
rank, as Prometheus' ``histogram_quantile`` does, over the bucket counts merged
exactly across nodes, routes and minutes.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

from chalicelib.api.charts import STEPS, Coverage, slots
from chalicelib.core.store import decompose
from chalicelib.core.timeutil import MINUTE, floor, iso
from chalicelib.core.usage import BucketUsage


def histogram_quantile(q: float, buckets: Dict[str, float]) -> Optional[float]:
    """The q-quantile of a cumulative histogram {le: count}, or None without observations."""
    ordered = sorted((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items())
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == math.inf:
                return lower  # Prometheus answers the highest finite bound
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return None


def summarize(bucket: BucketUsage) -> dict:
    codes = {str(k): int(v) for k, v in bucket.stats.get("codes", {}).items()}
    success = sum(n for code, n in codes.items() if code.isdigit() and 100 <= int(code) < 400)
    error = sum(n for code, n in codes.items() if code.isdigit() and int(code) >= 400)
    latency = bucket.stats.get("latency", {})
    count = latency.get("count", 0)
    buckets = latency.get("buckets", {})
    p95, p99 = histogram_quantile(0.95, buckets), histogram_quantile(0.99, buckets)
    return {
        "requests_count": {"success": success, "error": error},
        "latency_ms": {
            "average": round(latency.get("sum", 0) / count, 3) if count else None,
            "p95": round(p95, 3) if p95 is not None else None,
            "p99": round(p99, 3) if p99 is not None else None,
        },
        "by_status": dict(sorted(codes.items())),
    }


def service_stats(store, coverage: Coverage, service: str, start: int, end: int, step: Optional[str]) -> dict:
    """Stats over [start, end) (minute-aligned, clipped to what is collected), and per step."""
    start, end = floor(start, MINUTE), floor(end, MINUTE)
    final_end = min(end, coverage.watermark or start)
    total = BucketUsage(service, start)
    for lo, hi, level in decompose(start, final_end) if final_end > start else []:
        for bucket in store.query_buckets(service, level, lo, hi):
            total.merge(bucket)
    result = {"service": service, "start": iso(start), "end": iso(end), "collected_until": iso(final_end),
              **summarize(total)}
    if step:
        # A point partly collected (collection began in it, it is still filling, a gap cuts it)
        # holds what was collected and says so, as the bandwidth chart's points do.
        result["step"] = step
        result["series"] = [
            {"time": iso(s.time), "partial": s.partial,
             **(summarize(s.usage) if s.usage is not None else {"requests_count": None, "latency_ms": None,
                                                                "by_status": None})}
            for s in slots(store, coverage, service, floor(start, STEPS[step]), end, step)
        ]
    return result
