"""Every step adds up: for any range and step, a chart's points sum to the 1-minute chart over the
same range and to the overview's period usage, even where collection began inside a bucket and
the bucket still filling. The API in-process, on moto in-process."""
import json
import random

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import bootstrap
from tests.fakes.prometheus import FakePrometheus
from tests.support.config import build_settings

NOW = 1_796_351_820 + 17  # 2026-12-04T02:37:17Z: mid-hour, mid-quarter, two hours into the day
BACKFILL_MINUTES = 600  # from the first run (3 h ago): collection begins 2026-12-03T13:36Z, mid-hour, mid-day
STEPS = ("5m", "15m", "1h", "1d")


def make_run_like_traffic(first: int, minutes: int) -> FakePrometheus:
    """Two routes, two directions, uneven traffic every minute (as localrun/traffic.py makes)."""
    rng = random.Random(28)
    prom = FakePrometheus()
    base = {"__name__": "kong_bandwidth_bytes", "service": "media-cdn", "consumer": "", "workspace": "default",
            "instance": "n1"}
    for route in ("video", "thumbs"):
        for direction in ("ingress", "egress"):
            counter, samples = 0, []
            for i in range(minutes):
                samples.append((first + 60 * i + 15, counter))
                counter += rng.randrange(0, 50_000)
            prom.add({**base, "route": route, "direction": direction}, samples)
    return prom


@pytest.fixture(scope="module")
def api():
    """Thirteen hours collected in three runs (as the every-minute schedule leaves it), ending 02:36Z."""
    from moto import mock_aws

    from tests.conftest import configuration_variables
    from tests.support.config import BOTO_ENV

    mp = pytest.MonkeyPatch()
    for name in configuration_variables():
        mp.delenv(name, raising=False)
    for name, value in BOTO_ENV.items():
        mp.setenv(name, value)
    configured = build_settings(COLLECT_LAG_SECONDS=60, INITIAL_BACKFILL_MINUTES=BACKFILL_MINUTES)
    try:
        with mock_aws():
            from chalicelib.core import tables

            bootstrap.override(configured)
            tables.ensure_table()
            prom = make_run_like_traffic(NOW - 3 * 3600 - 60 * (BACKFILL_MINUTES + 5), BACKFILL_MINUTES + 200)
            for now in (NOW - 3 * 3600, NOW - 3600 - 7 * 60, NOW):
                report = bootstrap.override(configured, prometheus=prom).collector.run(now=now)
                assert not report.as_dict().get("error"), report.as_dict()
            bootstrap.override(configured, prometheus=prom, clock=lambda: NOW)
            from app import app

            with Client(app) as client:
                yield client
    finally:
        mp.undo()
        bootstrap.reset()


def get(client, path):
    response = client.http.get(path)
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def chart(client, start, end, step):
    return get(client, f"/v1/services/media-cdn/bandwidth?start={start}&end={end}&step={step}")


def totals(body):
    """Per direction, the sum over the points (and the series' own total, which must agree)."""
    result = {}
    for s in body["series"]:
        summed = sum(p["bytes"] for p in s["points"] if p["bytes"] is not None)
        assert summed == s["total_bytes"]
        result[s["direction"]] = summed
    return result


def test_collection_began_and_still_filling_buckets_are_partial_not_null(api):
    status = get(api, "/v1/collector/status")
    assert status["collection_start"] == "2026-12-03T13:36:00Z" and status["watermark"] == "2026-12-04T02:36:00Z"
    body = chart(api, NOW - 2 * 86400, NOW, "1d")
    points = body["series"][0]["points"]
    assert [(p["time"], p["bytes"] is not None, p["partial"]) for p in points] == [
        ("2026-12-02T00:00:00Z", False, False),  # before collection: nothing, null
        ("2026-12-03T00:00:00Z", True, True),  # collection began at 13:36
        ("2026-12-04T00:00:00Z", True, True),  # still filling
    ]
    hourly = chart(api, NOW - 3 * 3600, NOW, "1h")["series"][0]["points"]
    assert [(p["time"][11:16], p["partial"]) for p in hourly] == [
        ("23:00", False), ("00:00", False), ("01:00", False), ("02:00", True)]
    assert hourly[-1]["bytes"] > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start_minutes=st.integers(min_value=0, max_value=2 * 1440), length_minutes=st.integers(1, 2 * 1440),
       step=st.sampled_from(STEPS))
def test_any_step_adds_up_to_the_one_minute_chart(api, start_minutes, length_minutes, step):
    start = NOW - 60 * start_minutes - 11
    end = min(start + 60 * length_minutes, NOW + 3600)
    coarse = chart(api, start, end, step)
    fine = chart(api, coarse["start"], coarse["end"], "1m")
    assert totals(coarse) == totals(fine)
    for s in coarse["series"]:  # nothing collected: null and not partial; a partial point has bytes
        assert all(p["bytes"] is not None for p in s["points"] if p["partial"])


@pytest.mark.parametrize("period, step", [("day", "1h"), ("day", "15m"), ("month", "1d"), ("month", "1h"),
                                          ("week", "1d")])
def test_every_step_adds_up_to_the_overview_period_usage(api, period, step):
    response = api.http.put("/v1/services/media-cdn/quota", headers={"Content-Type": "application/json"},
                            body=json.dumps({"limit_bytes": 10**12, "period": period}))
    assert response.status_code == 200, response.body
    summary = get(api, "/v1/services/media-cdn")
    assert summary["usage"]["total"] > 0
    from chalicelib.core.timeutil import parse_time

    body = chart(api, parse_time(summary["period"]["start"]), parse_time(summary["period"]["end"]), step)
    got = totals(body)
    assert got == {"ingress": summary["usage"]["ingress"], "egress": summary["usage"]["egress"]}
    csv_body = api.http.get(f"/v1/services/media-cdn/bandwidth?start={parse_time(summary['period']['start'])}"
                            f"&end={parse_time(summary['period']['end'])}&step={step}&format=csv").body.decode()
    rows = [line.split(",") for line in csv_body.splitlines()[1:]]
    assert sum(int(r[4]) for r in rows if r[4]) == summary["usage"]["total"]
    assert {r[5] for r in rows if r[4] == ""} <= {"false"} and "true" in {r[5] for r in rows}


def test_stats_points_say_partial_too(api):
    body = get(api, f"/v1/services/media-cdn/stats?start={NOW - 86400}&end={NOW}&step=1d")
    assert [(p["time"][:10], p["partial"]) for p in body["series"]] == [("2026-12-03", True), ("2026-12-04", True)]
