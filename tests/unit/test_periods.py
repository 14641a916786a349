from datetime import datetime, timezone

import pytest

from chalicelib.core.periods import period_at


def ts(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def test_calendar_month():
    p = period_at("month", ts(2026, 11, 24, 3, 0))
    assert (p.start, p.end) == (ts(2026, 11, 1), ts(2026, 12, 1))


def test_month_rolls_into_next_year():
    p = period_at("month", ts(2026, 12, 31, 23, 59, 59))
    assert (p.start, p.end) == (ts(2026, 12, 1), ts(2027, 1, 1))


def test_anchor_day_before_anchor_belongs_to_previous_cycle():
    p = period_at("month", ts(2026, 11, 14, 12), anchor_day=15)
    assert (p.start, p.end) == (ts(2026, 10, 15), ts(2026, 11, 15))


def test_anchor_31_is_clamped_to_short_months():
    p = period_at("month", ts(2027, 2, 28, 10), anchor_day=31)
    assert (p.start, p.end) == (ts(2027, 2, 28), ts(2027, 3, 31))
    assert period_at("month", ts(2027, 2, 27), anchor_day=31).start == ts(2027, 1, 31)


def test_anchor_30_in_a_leap_february():
    p = period_at("month", ts(2028, 2, 29, 1), anchor_day=30)
    assert (p.start, p.end) == (ts(2028, 2, 29), ts(2028, 3, 30))


def test_leap_day_is_its_own_day_period():
    p = period_at("day", ts(2028, 2, 29, 23, 59))
    assert (p.start, p.end) == (ts(2028, 2, 29), ts(2028, 3, 1))


def test_iso_week_starts_monday_utc():
    p = period_at("week", ts(2026, 11, 29, 23, 0))  # a Sunday
    assert (p.start, p.end) == (ts(2026, 11, 23), ts(2026, 11, 30))


def test_period_boundary_belongs_to_the_new_period():
    assert period_at("month", ts(2026, 12, 1)).start == ts(2026, 12, 1)


def test_unknown_period_is_refused():
    with pytest.raises(ValueError):
        period_at("year", ts(2026, 1, 1))
