"""A pytest plugin that runs the suite as if today were another date.

`make test-dates` loads it (``-p tests.support.timetravel``) with ``BWMETER_TEST_DATE`` set to a
month end, a year end and a leap day: a test that mixes a fixed clock with the wall clock (data
written at a fixed time, then read "now") passes today and fails on one of those dates.
time-machine moves this process's clocks (``time.time``, ``datetime.now``...) and lets them tick;
processes the tests start keep the real clock, so only the in-process tiers run this way.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

VARIABLE = "BWMETER_TEST_DATE"
_travel = None


def travel_date(raw: str) -> datetime:
    """``2028-02-29T23:59:30Z`` (or without the Z) as an aware UTC datetime; a clear error otherwise."""
    try:
        when = datetime.fromisoformat(raw.strip().removesuffix("Z"))
    except ValueError:
        raise pytest.UsageError(f"{VARIABLE} must be an ISO date-time such as 2028-02-29T23:59:30Z, got {raw!r}")
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def pytest_configure(config):
    global _travel
    raw = os.environ.get(VARIABLE)
    if not raw:
        return
    import time_machine

    _travel = time_machine.travel(travel_date(raw), tick=True)
    _travel.start()


def pytest_unconfigure(config):
    global _travel
    if _travel is not None:
        _travel.stop()
        _travel = None


def pytest_report_header(config):
    raw = os.environ.get(VARIABLE)
    return f"time travel: the wall clock starts at {raw}" if raw else None
