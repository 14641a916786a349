"""``GET /metrics/bandwidth_used``: the previous service's endpoint, answered in its exact shape
so the frontend built for it keeps working unchanged.

The previous service's documented sample, for ``lookback_duration=5m`` requested at
2022-02-17T18:39:41.043080+00:00, lists the whole minutes that start inside the lookback
window (18:35 .. 18:39) and then one entry at the request instant, each as
``{"time", "type", "service", "route", "bandwidth_used"}`` in that key order, times in
Python's ``isoformat()`` (``+00:00``, microseconds when the instant has them).

Here a minute's ``bandwidth_used`` is its exact bytes once the collector has finalized it
(0 for a collected minute without traffic) and ``null`` otherwise: not collected, before the
service was first seen, inside a gap, not final yet, or the request instant itself. An
unknown service or route is not an error in that contract: every entry is ``null``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import List, Optional

from chalicelib.api.charts import Coverage, bucket_bytes
from chalicelib.core.errors import BadRequest
from chalicelib.core.quotas import validate_service_name
from chalicelib.core.timeutil import MINUTE
from chalicelib.core.usage import stored_label

MAX_LOOKBACK_MS = 7 * 86400 * 1000
DEFAULT_LOOKBACK = "5m"
TYPES = ("ingress", "egress")

# Prometheus' own duration grammar (prometheus/common model.ParseDuration): units from the
# largest down, each at most once, so "1h30m" and "90s" are durations and "30m1h" is not.
_UNITS_MS = (("y", 365 * 86400_000), ("w", 7 * 86400_000), ("d", 86400_000), ("h", 3600_000),
             ("m", 60_000), ("s", 1000), ("ms", 1))
DURATION = re.compile("^" + "".join(rf"(?:(?P<{'ms' if u == 'ms' else u}>\d+){u})?" for u, _ in _UNITS_MS) + "$")
# The same grammar for /openapi.json (schemathesis checks the API refuses what it excludes).
DURATION_PATTERN = r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$"


def parse_lookback(text: str) -> int:
    """A Prometheus-style duration in milliseconds, more than zero and at most 7 days."""
    match = DURATION.match(text) if text else None
    if not match:
        raise BadRequest(f"lookback_duration {text!r} is not a Prometheus duration such as 90s, 5m or 1h30m",
                         parameter="lookback_duration")
    total = sum(int(match.group(unit)) * size for unit, size in _UNITS_MS if match.group(unit))
    if total <= 0:
        raise BadRequest("lookback_duration must be more than zero", parameter="lookback_duration")
    if total > MAX_LOOKBACK_MS:
        raise BadRequest("lookback_duration may be at most 7d", parameter="lookback_duration")
    return total


@dataclass(frozen=True)
class LegacyQuery:
    service: str
    kind: str
    lookback_ms: int
    route: Optional[str]

    @classmethod
    def from_params(cls, params) -> "LegacyQuery":
        service = params.get("service")
        if not service:
            raise BadRequest("service is required", parameter="service")
        validate_service_name(service)  # a name no service can have is refused, not looked up
        kind = params.get("type", "egress")
        if kind not in TYPES:
            raise BadRequest("type must be ingress or egress", parameter="type")
        lookback = parse_lookback(params.get("lookback_duration", DEFAULT_LOOKBACK))
        return cls(service, kind, lookback, params.get("route"))


def _micros(instant: datetime) -> int:
    """Whole microseconds since the epoch, exactly (no float rounding of the request instant)."""
    delta = instant - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def window_minutes(now: datetime, lookback_ms: int) -> List[int]:
    """Starts (epoch seconds) of the whole minutes that start in [now - lookback, now)."""
    end = _micros(now)
    start = end - lookback_ms * 1000
    minute = MINUTE * 1_000_000
    first = -(-start // minute)  # ceiling
    last = -(-end // minute) - 1  # the last minute starting strictly before now
    return [m * MINUTE for m in range(first, last + 1)]


def _entry(time: str, query: LegacyQuery, used: Optional[int]) -> dict:
    # Key order is part of the contract (the old frontend's fixtures compare text).
    return {"time": time, "type": query.kind, "service": query.service, "route": query.route,
            "bandwidth_used": used}


def bandwidth_used(store, query: LegacyQuery, now: datetime) -> List[dict]:
    """The answer at ``now`` (an aware datetime): one entry per whole minute, then the instant."""
    minutes = window_minutes(now, query.lookback_ms)
    service = store.get_service(query.service) if minutes else None
    used: dict = {}
    if service is not None:
        coverage = Coverage.from_state(store.state_of_service(service), int(service.first_seen), store.retained_from(now.timestamp()))
        buckets = {b.start: b for b in store.query_buckets(query.service, "1m", minutes[0], minutes[-1] + MINUTE)}
        # A route is known when the service carried it during the window; one it never carried
        # is answered like an unknown service (all null), not as a run of zeros.
        known = query.route is None or any(stored_label(query.route) in b.routes for b in buckets.values())
        for t in minutes:
            if known and coverage.covers(t, t + MINUTE, "1m"):
                used[t] = bucket_bytes(buckets[t], query.kind, query.route) if t in buckets else 0
    entries = [_entry(datetime.fromtimestamp(t, tz=timezone.utc).isoformat(), query, used.get(t)) for t in minutes]
    entries.append(_entry(now.astimezone(timezone.utc).isoformat(), query, None))
    return entries
