"""GET /metrics/bandwidth_used, in process with a fixed clock: the previous service's documented
sample, byte for byte, and the rules around it (tests/integration/test_legacy_endpoint.py asks
the same of the running API over HTTP)."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chalicelib import bootstrap
from chalicelib.api.legacy import LegacyQuery, bandwidth_used, window_minutes
from chalicelib.core.errors import BadRequest
from tests.fakes.prometheus import FakePrometheus

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_bandwidth_used_sample.json"
REQUESTED_AT = datetime(2022, 2, 17, 18, 39, 41, 43080, tzinfo=timezone.utc)  # the sample's instant
M1839 = 1_645_123_140  # 2022-02-17T18:39:00Z


def collect(prom: FakePrometheus, until: int) -> None:
    """The real collector over the fake Prometheus, finalizing every minute before ``until``."""
    bootstrap.override(bootstrap.current().settings, prometheus=prom).collector.run(now=until)


def kong_series(prom, service, route, direction, samples):
    prom.add({"__name__": "kong_bandwidth_bytes", "service": service, "route": route, "direction": direction,
              "consumer": "", "workspace": "default", "instance": "n1"}, samples)


@pytest.fixture
def store(aws, config):
    """Collection from 18:35: bun-service first carries traffic in 18:39 (9133 B egress on
    bun-route, 100 B on other-route); quiet-service carries 50 B in 18:36 and nothing after."""
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=5)
    config.start()
    prom = FakePrometheus()
    kong_series(prom, "bun-service", "bun-route", "egress", [(M1839 + 30, 9133)])
    kong_series(prom, "bun-service", "other-route", "egress", [(M1839 + 30, 100)])
    kong_series(prom, "quiet-service", "q", "egress", [(M1839 - 150 + 60 * i, 50) for i in range(4)])
    # The old service showed a minute while it was still filling; here a minute is served once the
    # collector has finalized it, so the fixture's store holds 18:39 as collected.
    collect(prom, until=M1839 + 60)
    return bootstrap.current().store


def answer(store, now=REQUESTED_AT, **params):
    query = {"lookback_duration": "5m", "type": "egress", "service": "bun-service", "route": "bun-route", **params}
    return bandwidth_used(store, LegacyQuery.from_params({k: v for k, v in query.items() if v is not None}), now)


def test_the_documented_sample_is_reproduced_exactly(store):
    expected = json.loads(SAMPLE.read_text())
    body = answer(store)
    assert body == expected
    assert [list(entry) for entry in body] == [list(entry) for entry in expected]  # key order too


def test_without_a_route_every_route_is_summed_and_route_is_null(store):
    body = answer(store, route=None)
    assert [e["route"] for e in body] == [None] * 6
    assert body[4]["bandwidth_used"] == 9233


def test_a_collected_minute_without_traffic_is_zero(store):
    body = answer(store, service="quiet-service", route=None)
    assert [e["bandwidth_used"] for e in body] == [None, 50, 0, 0, 0, None]


def test_an_unknown_service_answers_nulls(store):
    body = answer(store, service="nobody", route=None)
    assert [e["bandwidth_used"] for e in body] == [None] * 6
    assert body[-1]["time"] == "2022-02-17T18:39:41.043080+00:00" and body[0]["service"] == "nobody"


def test_an_unknown_route_answers_nulls(store):
    assert [e["bandwidth_used"] for e in answer(store, route="no-such-route")] == [None] * 6


def test_ingress_is_its_own_type(store):
    body = answer(store, type="ingress")
    assert {e["type"] for e in body} == {"ingress"} and body[4]["bandwidth_used"] == 0


def test_a_minute_not_final_yet_is_null(aws, config):
    """Where the product differs from the sample: at 18:39:41 the minute 18:39 is still filling."""
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=5)
    config.start()
    prom = FakePrometheus()
    kong_series(prom, "bun-service", "bun-route", "egress", [(M1839 - 90, 0), (M1839 - 30, 700), (M1839 + 30, 9833)])
    collect(prom, until=REQUESTED_AT.timestamp())
    body = answer(bootstrap.current().store)
    assert [e["bandwidth_used"] for e in body] == [None, None, None, 700, None, None]


def test_an_instant_on_a_whole_minute_is_listed_once():
    now = datetime(2022, 2, 17, 18, 39, tzinfo=timezone.utc)
    assert window_minutes(now, 5 * 60_000) == [M1839 - 300 + 60 * i for i in range(5)]


@pytest.mark.parametrize("duration, minutes", [
    ("90s", 1), ("30s", 0), ("1h30m", 90), ("1m30s", 1), ("2m500ms", 2), ("7d", 7 * 1440), ("1w", 7 * 1440),
])
def test_prometheus_durations_choose_the_minutes_that_start_in_the_window(duration, minutes):
    query = LegacyQuery.from_params({"service": "s", "lookback_duration": duration})
    assert len(window_minutes(REQUESTED_AT, query.lookback_ms)) == minutes


@pytest.mark.parametrize("params, parameter", [
    ({"lookback_duration": "5minutes"}, "lookback_duration"),
    ({"lookback_duration": "30m1h"}, "lookback_duration"),
    ({"lookback_duration": "0m"}, "lookback_duration"),
    ({"lookback_duration": ""}, "lookback_duration"),
    ({"lookback_duration": "1h-5m"}, "lookback_duration"),
    ({"lookback_duration": "7d1s"}, "lookback_duration"),
    ({"lookback_duration": "2w"}, "lookback_duration"),
    ({"type": "sideways"}, "type"),
    ({"type": ""}, "type"),
    ({"service": ""}, "service"),
])
def test_bad_input_is_refused_naming_the_parameter(params, parameter):
    with pytest.raises(BadRequest) as refused:
        LegacyQuery.from_params({"service": "s", **params})
    assert refused.value.parameter == parameter
