import math

import pytest

from chalicelib.core.errors import BadSample
from chalicelib.core.store import decompose
from chalicelib.collect.deltas import MinuteAccumulator, series_deltas

T0 = 1_700_000_040  # a minute boundary


def test_deltas_are_differences_attributed_to_the_later_samples_minute():
    samples = [(T0 + 15, 130), (T0 + 45, 150), (T0 + 75, 210)]
    assert series_deltas(100, samples) == {T0: 50, T0 + 60: 60}


def test_a_drop_is_a_reset_and_counts_the_new_value():
    assert series_deltas(1000, [(T0 + 10, 1200), (T0 + 20, 30), (T0 + 30, 50)]) == {T0: 200 + 30 + 20}


def test_a_series_born_in_the_window_counts_its_first_value():
    assert series_deltas(None, [(T0 + 5, 700), (T0 + 65, 900)]) == {T0: 700, T0 + 60: 200}


def test_idle_minutes_produce_no_entries():
    assert series_deltas(500, [(T0 + 5, 500), (T0 + 65, 500)]) == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_samples_are_rejected(bad):
    with pytest.raises(BadSample):
        series_deltas(0, [(T0, bad)])


def test_accumulator_sums_nodes_per_service_route_and_direction():
    acc = MinuteAccumulator()
    acc.add("pay", "r1", "egress", {T0: 10})
    acc.add("pay", "r1", "egress", {T0: 5})  # a second gateway node
    acc.add("pay", "r2", "ingress", {T0: 7, T0 + 60: 1})
    minutes = acc.minutes()
    assert [(b.service, b.start, b.routes) for b in minutes] == [
        ("pay", T0, {"r1": {"ingress": 0, "egress": 15}, "r2": {"ingress": 7, "egress": 0}}),
        ("pay", T0 + 60, {"r2": {"ingress": 1, "egress": 0}}),
    ]
    assert minutes[0].total == 22


def test_decompose_tiles_a_range_with_the_coarsest_whole_buckets():
    day = 86400 * 20000
    start, end = day - 3 * 60, day + 86400 + 3600 + 17 * 60
    parts = decompose(start, end)
    assert parts == [
        (day - 180, day, "1m"),
        (day, day + 86400, "1d"),
        (day + 86400, day + 86400 + 3600, "1h"),
        (day + 86400 + 3600, day + 86400 + 3600 + 900, "15m"),
        (day + 86400 + 3600 + 900, day + 86400 + 3600 + 900 + 120, "1m"),
    ]
    assert sum(hi - lo for lo, hi, _ in parts) == end - start


def test_traffic_that_matched_no_service_is_kept_under_its_own_name():
    from chalicelib.collect.kong import UNMATCHED_SERVICE, bandwidth_key

    assert bandwidth_key({"direction": "egress", "route": ""}).service == UNMATCHED_SERVICE
    assert bandwidth_key({"type": "ingress", "service": "s"}) == ("s", "", "ingress", "")
