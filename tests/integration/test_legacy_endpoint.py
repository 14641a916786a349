"""GET /metrics/bandwidth_used through real HTTP (`chalice local` on a moto server): the shape,
key order and time format the older frontend parses, and its refusals. The exact documented
sample, with a fixed clock, is tests/unit/test_legacy_endpoint.py."""
import json
import re
import time
from datetime import datetime

import pytest
import requests

from tests.support.keyed_api import keyed_api, seed_usage

KEYS = ["time", "type", "service", "route", "bandwidth_used"]
MINUTE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00\+00:00$")
INSTANT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("legacy"), {"STAGE": "dev"}) as running:
        seed_usage("payments-api", minutes=20)
        yield running


def legacy(api, query):
    return requests.get(f"{api.url}/metrics/bandwidth_used?{query}", timeout=20)


def test_the_answer_has_the_old_shape_key_order_and_time_format(api):
    before = time.time()
    response = legacy(api, "lookback_duration=5m&type=egress&service=payments-api&route=r")
    after = time.time()
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.text, object_pairs_hook=lambda pairs: pairs)
    assert len(body) == 6 and all([key for key, _ in entry] == KEYS for entry in body)
    entries = [dict(entry) for entry in body]
    assert all(MINUTE_TIME.match(e["time"]) for e in entries[:5]) and INSTANT_TIME.match(entries[5]["time"])
    minutes = [datetime.fromisoformat(e["time"]).timestamp() for e in entries[:5]]
    assert [b - a for a, b in zip(minutes, minutes[1:])] == [60] * 4
    instant = datetime.fromisoformat(entries[5]["time"]).timestamp()
    assert before - 1 <= instant <= after + 1 and instant - 300 <= minutes[0] < instant - 240
    assert all(e["type"] == "egress" and e["service"] == "payments-api" and e["route"] == "r" for e in entries)
    assert entries[5]["bandwidth_used"] is None
    assert all(e["bandwidth_used"] in (None, 1000) for e in entries[:5])


def test_collected_minutes_carry_the_exact_integer_bytes(api):
    body = legacy(api, "lookback_duration=30m&service=payments-api").json()
    collected = [e["bandwidth_used"] for e in body if e["bandwidth_used"] is not None]
    assert collected and set(collected) == {1000} and all(type(v) is int for v in collected)
    assert {e["route"] for e in body} == {None}


def test_an_unknown_service_is_200_with_nulls(api):
    response = legacy(api, "lookback_duration=2m&service=nobody&route=nowhere")
    assert response.status_code == 200
    assert [e["bandwidth_used"] for e in response.json()] == [None, None, None]


# 90 seconds hold one or two minute starts depending on the instant; 90 minutes always hold 90.
@pytest.mark.parametrize("duration, entries", [("90s", (2, 3)), ("1h30m", (91,))])
def test_compound_prometheus_durations(api, duration, entries):
    assert len(legacy(api, f"lookback_duration={duration}&service=payments-api").json()) in entries


@pytest.mark.parametrize("query, parameter", [
    ("service=payments-api&lookback_duration=5minutes", "lookback_duration"),
    ("service=payments-api&lookback_duration=8d", "lookback_duration"),
    ("service=payments-api&type=sideways", "type"),
    ("lookback_duration=5m", "service"),
])
def test_bad_input_is_400_json_naming_the_parameter(api, query, parameter):
    response = legacy(api, query)
    assert response.status_code == 400
    assert response.json()["error"] == {**response.json()["error"], "code": "bad_request", "parameter": parameter}
