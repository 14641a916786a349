"""The date check's plugin (tests/support/timetravel.py) really moves this process's clocks."""
import time
from datetime import datetime, timezone

import pytest

from tests.support import timetravel

pytestmark = pytest.mark.unit
LEAP_DAY = datetime(2028, 2, 29, 23, 58, tzinfo=timezone.utc)


def test_a_date_with_or_without_z_is_utc():
    assert timetravel.travel_date("2028-02-29T23:58:00Z") == LEAP_DAY
    assert timetravel.travel_date("2028-02-29T23:58:00") == LEAP_DAY


def test_a_malformed_date_is_a_usage_error_naming_the_variable():
    with pytest.raises(pytest.UsageError, match="BWMETER_TEST_DATE"):
        timetravel.travel_date("next tuesday")


def test_the_plugin_moves_the_wall_clock_and_puts_it_back(monkeypatch):
    monkeypatch.setenv(timetravel.VARIABLE, "2028-02-29T23:58:00Z")
    real = time.time()
    timetravel.pytest_configure(config=None)
    try:
        assert abs(time.time() - LEAP_DAY.timestamp()) < 60
        assert datetime.now(timezone.utc).date().isoformat() in ("2028-02-29", "2028-03-01")
    finally:
        timetravel.pytest_unconfigure(config=None)
    assert abs(time.time() - real) < 60
