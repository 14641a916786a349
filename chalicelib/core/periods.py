"""Quota periods: day, ISO week or month (optionally from a billing-cycle day), in UTC."""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

PERIOD_KINDS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    kind: str
    start: int  # epoch seconds, inclusive
    end: int  # exclusive
    anchor_day: int = 1

    def contains(self, ts: float) -> bool:
        return self.start <= ts < self.end

    @property
    def adjective(self) -> str:
        return {"day": "daily", "week": "weekly", "month": "monthly"}[self.kind]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc)


def _anchor(year: int, month: int, anchor_day: int) -> datetime:
    """The anchor day of a month, clamped to its length (31 -> 28 or 29 in February)."""
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=timezone.utc)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def period_at(kind: str, ts: float, anchor_day: int = 1) -> Period:
    """The quota period of ``kind`` that contains the instant ``ts``."""
    now = _utc(ts)
    if kind == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
    elif kind == "week":
        day = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif kind == "month":
        if not 1 <= anchor_day <= 31:
            raise ValueError("anchor_day must be between 1 and 31")
        start = _anchor(now.year, now.month, anchor_day)
        if now < start:
            start = _anchor(*_add_months(now.year, now.month, -1), anchor_day)
        end = _anchor(*_add_months(start.year, start.month, 1), anchor_day)
    else:
        raise ValueError(f"unknown period {kind!r}; use one of {', '.join(PERIOD_KINDS)}")
    return Period(kind, int(start.timestamp()), int(end.timestamp()), anchor_day if kind == "month" else 1)
