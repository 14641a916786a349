"""Time in Bandwidth Meter: epoch seconds (UTC) in code, RFC 3339 with ``Z`` on the wire."""
from __future__ import annotations

import re
from datetime import datetime, timezone

MINUTE = 60
HOUR = 3600
DAY = 86400

# Storage levels: minutes, and rollups recomputed from the next finer level.
LEVELS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
LEVEL_ORDER = ("1m", "5m", "15m", "1h", "1d")

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}


class TimeFormatError(ValueError):
    pass


def floor(ts: float, step: int) -> int:
    return int(ts // step * step)


def floor_minute(ts: float) -> int:
    return floor(ts, MINUTE)


def iso(ts: float) -> str:
    """RFC 3339 UTC with a Z, second precision."""
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_minute(ts: float) -> str:
    """The compact sortable form used inside keys: 2026-11-24T02:58Z."""
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


LATEST = 253402300799  # 9999-12-31T23:59:59Z, the last instant RFC 3339 can write


def parse_time(value: str) -> int:
    """RFC 3339 (``2026-11-24T10:00:00Z`` or with offset) or epoch seconds, 1970 to 9999."""
    value = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        seconds = int(float(value))
        if not 0 <= seconds <= LATEST:
            raise TimeFormatError(f"{value!r} is outside 1970-01-01 .. 9999-12-31 as epoch seconds")
        return seconds
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeFormatError(f"{value!r} is not an RFC 3339 time or epoch seconds") from None
    if parsed.tzinfo is None:
        raise TimeFormatError(f"{value!r} has no time zone; add Z for UTC")
    seconds = int(parsed.timestamp())
    if not 0 <= seconds <= LATEST:
        raise TimeFormatError(f"{value!r} is before 1970 or after 9999")
    return seconds


def parse_duration(value: str) -> int:
    """Prometheus-style durations: 30s, 5m, 1h, 7d, 2w (one unit)."""
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise TimeFormatError(f"{value!r} is not a duration such as 5m, 1h or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
