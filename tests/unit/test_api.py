"""The API through Chalice's in-process test client, on moto in-process."""
import itertools
import json

import pytest
from chalice.test import Client

from tests.fakes.prometheus import FakePrometheus

T0 = 1_796_083_200 - 3600  # 2026-11-30T23:00Z


@pytest.fixture
def client(aws, config):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=60)
    config.start()
    from app import app

    with Client(app) as c:
        yield c


@pytest.fixture
def collected(client, config, monkeypatch):
    """Ten minutes of 1000 B/min egress on route a and 10 B/min ingress on route b, collected up to T0+10m."""
    prom = FakePrometheus()
    base = {"__name__": "kong_bandwidth_bytes", "service": "pay", "consumer": "", "workspace": "default",
            "instance": "n1"}
    prom.add({**base, "route": "a", "direction": "egress"}, [(T0 - 60 + 60 * i, 1000 * i) for i in range(12)])
    prom.add({**base, "route": "b", "direction": "ingress"}, [(T0 - 60 + 60 * i, 10 * i) for i in range(12)])
    config.start(prometheus=prom).collector.run(now=T0 + 600)
    ticks = itertools.count()  # a clock that moves a millisecond per reading
    config.start(prometheus=prom, clock=lambda: T0 + 630 + next(ticks) / 1000)
    return client


def get(client, path, **headers):
    response = client.http.get(path, headers=headers)
    if "csv" in response.headers.get("Content-Type", ""):
        return response.status_code, response.body
    return response.status_code, json.loads(response.body) if response.body else None


def test_health_names_configured_backends(client):
    status, body = get(client, "/v1/health")
    assert status == 200 and body["status"] == "ok"
    assert body["backends"]["table"] == "bandwidth-meter-test" and body["backends"]["prometheus"] is True


def test_bandwidth_points_are_bytes_zero_or_null(collected):
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0 - 120}&end={T0 + 720}&step=1m&direction=egress")
    assert status == 200 and body["step"] == "1m"
    points = [p["bytes"] for p in body["series"][0]["points"]]
    # 22:58 and 22:59 were collected but precede the service's first traffic (null); from the
    # watermark (23:10) on nothing is final yet (null).
    assert points[:2] == [None, None]
    assert points[2:12] == [1000] * 10
    assert points[12:] == [None, None]
    assert body["series"][0]["total_bytes"] == 10_000


def test_split_by_route_gives_one_series_per_route_and_direction(collected):
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=5m&split=route")
    assert status == 200
    totals = {(s["route"], s["direction"]): s["total_bytes"] for s in body["series"]}
    assert totals == {("a", "ingress"): 0, ("a", "egress"): 10_000, ("b", "ingress"): 100, ("b", "egress"): 0}


def test_csv_has_a_row_per_point(collected):
    response = collected.http.get(f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 300}&step=1m&direction=total",
                                  headers={"Accept": "text/csv"})
    lines = response.body.decode().splitlines()
    assert lines[0] == "time,service,direction,route,bytes,partial"
    assert lines[1] == "2026-11-30T23:00:00Z,pay,total,,1010,false" and len(lines) == 6


@pytest.mark.parametrize("query, parameter", [
    ("start=yesterday", "start"),
    (f"start={T0}&end={T0 - 60}", "start"),
    ("step=2m", "step"),
    (f"start={T0 - 86400 * 30}&end={T0}&step=1m", "step"),
    ("direction=sideways", "direction"),
])
def test_bad_parameters_get_400_naming_the_parameter(collected, query, parameter):
    status, body = get(collected, f"/v1/services/pay/bandwidth?{query}")
    assert status == 400 and body["error"]["code"] == "bad_request" and body["error"]["parameter"] == parameter


def test_unknown_service_is_404(collected):
    status, body = get(collected, "/v1/services/nope/bandwidth")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_services_overview_with_quota_percent(collected):
    put = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                             body=json.dumps({"limit_bytes": 20_200, "notify": ["a@example.com"]}))
    assert put.status_code == 200
    status, body = get(collected, "/v1/services")
    (row,) = body["services"]
    assert row["usage"] == {"ingress": 100, "egress": 10_000, "total": 10_100}
    assert row["percent"] == 50.0 and row["period"]["start"] == "2026-11-01T00:00:00Z"


def test_invalid_quota_gets_400_naming_each_field_and_stores_nothing(collected):
    body = {"limit_bytes": -1, "thresholds": [80, 80], "notify": ["not-an-email"], "colour": "red"}
    response = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                                  body=json.dumps(body))
    error = json.loads(response.body)["error"]
    assert response.status_code == 400
    fields = {d["field"] for d in error["details"]}
    assert {"limit_bytes", "thresholds", "notify/0", "colour"} <= fields
    assert get(collected, "/v1/services/pay/quota")[0] == 404
    assert get(collected, "/v1/quota-audit")[1]["entries"] == []


def test_malformed_json_is_400(collected):
    response = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                                  body="{not json")
    assert response.status_code == 400 and json.loads(response.body)["error"]["parameter"] == "body"


def test_quota_changes_are_audited(collected):
    for limit in (100, 200):
        collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                           body=json.dumps({"limit_bytes": limit}))
    collected.http.delete("/v1/services/pay/quota")
    entries = get(collected, "/v1/quota-audit")[1]["entries"]
    assert [(e["action"], (e["old"] or {}).get("limit_bytes"), (e["new"] or {}).get("limit_bytes"))
            for e in entries] == [("delete", 200, None), ("put", 100, 200), ("put", None, 100)]


def test_a_quota_for_a_service_never_seen_is_stored_with_a_warning_naming_the_closest(collected):
    put = collected.http.put("/v1/services/pya/quota", headers={"Content-Type": "application/json"},
                             body=json.dumps({"limit_bytes": 100}))
    body = json.loads(put.body)
    assert put.status_code == 200 and body["limit_bytes"] == 100
    assert body["warnings"] == ["service 'pya' has not been seen; did you mean 'pay'?"]
    assert get(collected, "/v1/services/pya/quota")[1]["limit_bytes"] == 100  # stored: it may start tomorrow
    far = json.loads(collected.http.put("/v1/services/zzz-new/quota", headers={"Content-Type": "application/json"},
                                        body=json.dumps({"limit_bytes": 100})).body)
    assert far["warnings"] == ["service 'zzz-new' has not been seen; the quota applies once it carries traffic"]
    seen = json.loads(collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                                         body=json.dumps({"limit_bytes": 100})).body)
    assert "warnings" not in seen


@pytest.mark.parametrize("period, anchor", [("day", None), ("week", None), ("month", 15)])
def test_the_overview_shows_anchor_day_only_for_a_monthly_quota(collected, period, anchor):
    body = {"limit_bytes": 100, "period": period, **({"anchor_day": anchor} if anchor else {})}
    assert collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                              body=json.dumps(body)).status_code == 200
    for quota in (get(collected, "/v1/services/pay")[1]["quota"], get(collected, "/v1/services")[1]["services"][0]["quota"]):
        assert quota["period"] == period and quota.get("anchor_day") == anchor


def test_a_stored_quota_shows_anchor_day_only_for_a_monthly_period(collected):
    from chalicelib.core.models import QUOTA_PK, Quota

    refused = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                                 body=json.dumps({"limit_bytes": 100, "period": "day", "anchor_day": 15}))
    assert refused.status_code == 400 and "period" in refused.body.decode()
    put = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                             body=json.dumps({"limit_bytes": 100, "period": "day"}))
    assert put.status_code == 200 and "anchor_day" not in json.loads(put.body)
    assert "anchor_day" not in get(collected, "/v1/services/pay/quota")[1]
    # A daily quota stored before the rule still holds one: it is not shown.
    old = Quota.get(QUOTA_PK, "pay")
    old.body = {**old.body, "anchor_day": 1}
    old.save()
    assert "anchor_day" not in get(collected, "/v1/services/pay/quota")[1]
    monthly = collected.http.put("/v1/services/pay/quota", headers={"Content-Type": "application/json"},
                                 body=json.dumps({"limit_bytes": 100, "period": "month", "anchor_day": 15}))
    assert json.loads(monthly.body)["anchor_day"] == 15 == get(collected, "/v1/services/pay/quota")[1]["anchor_day"]


def test_quota_rules_apply_by_pattern_and_own_quota_wins(collected):
    rules = {"rules": [{"pattern": "pa*", "limit_bytes": 1000, "period": "day"}]}
    assert collected.http.put("/v1/quota-rules", headers={"Content-Type": "application/json"},
                              body=json.dumps(rules)).status_code == 200
    assert get(collected, "/v1/services/pay")[1]["quota"]["source"] == "rule:pa*"
    bad = collected.http.put("/v1/quota-rules", headers={"Content-Type": "application/json"},
                             body=json.dumps({"rules": [{"pattern": "pay\n", "limit_bytes": 1}]}))
    assert bad.status_code == 400 and "rules/0/pattern" in bad.body.decode()


def test_collector_status_reports_the_watermark(collected):
    status, body = get(collected, "/v1/collector/status")
    assert status == 200 and body["watermark"] == "2026-11-30T23:10:00Z" and body["running"] is False
    assert body["last_error"] is None and body["series_seen"] == 2


def test_cors_echoes_only_allowed_origins(client, config):
    config.set(CORS_ORIGINS="https://app.example")
    config.start()
    allowed = client.http.get("/v1/health", headers={"Origin": "https://app.example"})
    other = client.http.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("query, parameter", [
    ("start=-916167220907&end=713.3", "start"),
    ("start=0&end=999999999999999", "end"),
    ("start=1800-01-01T00:00:00Z", "start"),
    ("start=0&end=1500000000&step=auto", "step"),  # 47 years of days is more than 11,000 points
])
def test_times_outside_what_can_be_charted_are_400_not_500(collected, query, parameter):
    status, body = get(collected, f"/v1/services/pay/bandwidth?{query}")
    assert status == 400 and body["error"]["parameter"] == parameter
