"""The consumers API (api/consumers.py) on moto in-process: the listing in every order and its
paging at a constant number of DynamoDB requests, a consumer's period usage and quota, its chart
summed over its services, and bad input as 400/404 JSON."""
import dataclasses
import itertools
import json
from urllib.parse import quote

import pytest
from botocore.client import BaseClient

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMERS_PK, ConsumerUsage
from chalicelib.core.periods import period_at
from tests.fakes.prometheus import FakePrometheus
from tests.unit.test_api import client  # noqa: F401 (the fixture: the app on moto in-process)
from tests.unit.test_collector import T0

QUOTA = {"limit_bytes": 100_000, "period": "month", "anchor_day": 1, "direction": "total", "thresholds": [80, 100],
         "notify": [], "action": "warn"}


def kong37(service, consumer, route="r", direction="egress", workspace="default"):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": route, "direction": direction,
            "workspace": workspace, "consumer": consumer, "instance": "n1", "job": "kong"}


class ConsumerQuotas:
    """The quota book with consumer quotas (H3 stores them; here the snapshot is given)."""

    def __init__(self, book, quotas):
        self.book, self.quotas = book, quotas

    def load(self):
        return dataclasses.replace(self.book.load(), consumer_quotas=self.quotas)

    def __getattr__(self, name):
        return getattr(self.book, name)


def override(prom, quotas=None):
    ticks = itertools.count()
    deps = bootstrap.override(bootstrap.current().settings, prometheus=prom,  # the aws fixture's settings
                              clock=lambda: T0 + 630 + next(ticks) / 1000)
    if quotas is not None:
        deps.__dict__["quotas"] = ConsumerQuotas(deps.quotas, quotas)
    return deps


@pytest.fixture
def collected(client):
    """Ten minutes to T0+10m: alice 1000 B/min on pay and 300 B/min on search, bob 2000 B/min on
    pay, carol of workspace ops (ops:carol) 50 B/min ingress on ops's search (ops:search), anonymous
    10 B/min on pay."""
    prom = FakePrometheus()
    for service, consumer, per_minute, direction, workspace in [
            ("pay", "alice", 1000, "egress", "default"), ("search", "alice", 300, "egress", "default"),
            ("pay", "bob", 2000, "egress", "default"), ("search", "carol", 50, "ingress", "ops"),
            ("pay", "", 10, "egress", "default")]:
        prom.add(kong37(service, consumer, direction=direction, workspace=workspace),
                 [(T0 - 60 + 60 * i, per_minute * i) for i in range(12)])
    # alice's quota is nearly spent, carol's is not: by percent, alice then carol, bob (no quota) last.
    deps = override(prom, {"alice": {**QUOTA, "limit_bytes": 20_000}, "ops:carol": QUOTA})
    deps.collector.run(now=T0 + 600)
    override(prom, {"alice": {**QUOTA, "limit_bytes": 20_000}, "ops:carol": QUOTA})
    return client


def get(client, path):
    response = client.http.get(path)
    if "csv" in response.headers.get("Content-Type", ""):
        return response.status_code, response.body.decode()
    return response.status_code, json.loads(response.body)


def test_the_listing_by_usage_is_busiest_first_with_fresh_values_and_when_it_was_ranked(collected):
    status, body = get(collected, "/v1/consumers")
    assert status == 200
    assert [(c["consumer"], c["usage"]["total"]) for c in body["consumers"]] == [
        ("bob", 20_000), ("alice", 13_000), ("ops:carol", 500)]
    assert body["total_count"] == 3 and body["next_cursor"] is None and body["ranked_at"] == "2026-11-30T23:10:00Z"
    status, body = get(collected, "/v1/consumers?order=asc&limit=2")
    assert [c["consumer"] for c in body["consumers"]] == ["ops:carol", "alice"]
    status, body = get(collected, f"/v1/consumers?order=asc&limit=2&cursor={body['next_cursor']}")
    assert [c["consumer"] for c in body["consumers"]] == ["bob"] and body["next_cursor"] is None


def test_the_listing_by_percent_puts_consumers_without_a_quota_last(collected):
    status, body = get(collected, "/v1/consumers?sort=percent")
    assert [(c["consumer"], c["percent"]) for c in body["consumers"]] == [("alice", 65.0), ("ops:carol", 0.5),
                                                                        ("bob", None)]
    assert body["consumers"][0]["quota"]["limit_bytes"] == 20_000 and body["consumers"][0]["quota"]["source"] == "consumer"


def test_the_listing_by_name_pages_with_a_cursor_both_ways(collected):
    for order, expected in [("asc", ["alice", "bob", "ops:carol"]), ("desc", ["ops:carol", "bob", "alice"])]:
        seen, cursor = [], None
        while True:
            status, body = get(collected, f"/v1/consumers?sort=name&order={order}&limit=1"
                                          + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200 and len(body["consumers"]) == 1
            seen.append(body["consumers"][0]["consumer"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, order


def test_a_consumer_has_its_period_usage_per_service_and_its_workspace(collected):
    status, body = get(collected, "/v1/consumers/alice")
    assert status == 200
    assert body["usage"] == {"ingress": 0, "egress": 13_000, "total": 13_000}
    assert body["services"] == {"pay": {"ingress": 0, "egress": 10_000, "total": 10_000},
                                "search": {"ingress": 0, "egress": 3_000, "total": 3_000}}
    assert body["period"] == {"kind": "month", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert body["percent"] == 65.0 and body["quota"]["limit_bytes"] == 20_000
    assert body["first_seen"] == "2026-11-30T23:00:00Z" and body["last_active"] == "2026-11-30T23:09:00Z"
    status, body = get(collected, "/v1/consumers/" + quote("ops:carol", safe=""))
    assert (body["workspace"], body["name"], body["usage"]["ingress"]) == ("ops", "carol", 500)
    status, body = get(collected, "/v1/consumers/bob")
    assert body["quota"] is None and body["percent"] is None


@pytest.mark.parametrize("path, status, parameter", [
    ("/v1/consumers/nobody", 404, None),
    ("/v1/consumers/(anonymous)", 404, None),  # traffic without a consumer is no consumer
    ("/v1/consumers/al%0Aice", 400, "consumer"),
    ("/v1/consumers?sort=size", 400, "sort"),
    ("/v1/consumers?limit=0", 400, "limit"),
    ("/v1/consumers?cursor=garbage", 400, "cursor"),
    ("/v1/consumers?sort=name&cursor=garbage", 400, "cursor"),
    ("/v1/consumers/alice/bandwidth?step=7m", 400, "step"),
    ("/v1/consumers/alice/bandwidth?direction=up", 400, "direction"),
    ("/v1/consumers/alice/bandwidth?split=route", 400, "split"),
    ("/v1/consumers/alice/bandwidth?start=yesterday", 400, "start"),
    ("/v1/consumers/alice/bandwidth?service=nope", 404, None),
])
def test_bad_input_is_json_400_or_404(collected, path, status, parameter):
    got, body = get(collected, path)
    assert got == status, body
    assert body["error"]["message"] and body["error"].get("parameter") == parameter


def test_the_chart_sums_the_consumers_services_at_every_step_and_splits_and_narrows(collected):
    for step in ("1m", "5m", "15m", "1h"):
        status, body = get(collected, f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&step={step}")
        assert status == 200 and body["consumer"] == "alice" and body["step"] == step
        assert [(s["direction"], s["total_bytes"]) for s in body["series"]] == [("ingress", 0), ("egress", 13_000)], step
    status, body = get(collected, f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&step=1m&direction=total")
    assert [p["bytes"] for p in body["series"][0]["points"]] == [1300] * 10
    assert body["series"][0]["points"][0] == {"time": "2026-11-30T23:00:00Z", "bytes": 1300, "partial": False}
    status, body = get(collected, f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&split=service&direction=egress")
    assert {s["service"]: s["total_bytes"] for s in body["series"]} == {"pay": 10_000, "search": 3_000}
    status, body = get(collected, f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&service=search&direction=egress")
    assert body["service"] == "search" and body["series"][0]["total_bytes"] == 3_000
    # Before collection began: null, not 0.
    status, body = get(collected, f"/v1/consumers/alice/bandwidth?start={T0 - 7200}&end={T0 - 6600}&step=1m&direction=total")
    assert {p["bytes"] for p in body["series"][0]["points"]} == {None}


def test_the_chart_as_csv(collected):
    status, text = get(collected, f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 120}&step=1m&format=csv"
                                  "&split=service&direction=egress")
    assert status == 200
    assert text.splitlines() == ["time,consumer,service,direction,bytes,partial",
                                 "2026-11-30T23:00:00Z,alice,pay,egress,1000,false",
                                 "2026-11-30T23:01:00Z,alice,pay,egress,1000,false",
                                 "2026-11-30T23:00:00Z,alice,search,egress,300,false",
                                 "2026-11-30T23:01:00Z,alice,search,egress,300,false"]


def seed(count):
    """``count`` consumers straight into the table, and both rankings."""
    deps = bootstrap.current()
    month = period_at("month", T0)
    items = [ConsumerUsage(CONSUMERS_PK, f"c{i:05d}", consumer=f"c{i:05d}", first_seen=T0, last_active=T0,
                           period_kind="month", period_anchor=1, period_start=month.start, period_end=month.end,
                           ingress=0, egress=i, total=i, through=T0 + 60, services={"pay": {"ingress": 0, "egress": i}})
             for i in range(count)]
    deps.store.put_consumers(items)
    names = [i.consumer for i in reversed(items)]
    deps.store.put_ranking("usage", names, 100, T0)
    deps.store.put_ranking("percent", names, 100, T0)


def requests_for(client, monkeypatch, path):
    calls = []
    original = BaseClient._make_api_call
    monkeypatch.setattr(BaseClient, "_make_api_call",
                        lambda self, operation, params: calls.append(operation) or original(self, operation, params))
    status, body = get(client, path)
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    assert status == 200, body
    return calls, body


@pytest.mark.parametrize("query", ["sort=usage", "sort=percent&order=asc", "sort=name", "sort=name&order=desc"])
def test_a_page_costs_the_same_requests_with_ten_times_the_consumers(collected, monkeypatch, query):
    seed(30)
    small, body = requests_for(collected, monkeypatch, f"/v1/consumers?{query}&limit=10")
    assert len(body["consumers"]) == 10
    seed(400)
    large, body = requests_for(collected, monkeypatch, f"/v1/consumers?{query}&limit=10")
    assert len(body["consumers"]) == 10 and body["next_cursor"]
    assert {"Query", "BatchGetItem"} & set(small)  # the requests were seen
    # constant: the quotas (services' and consumers' partitions), the ranking, the page's items
    assert sorted(large) == sorted(small) and len(large) <= 6
    if "usage" in query:
        assert [c["consumer"] for c in body["consumers"]][:2] == ["c00399", "c00398"]


def test_the_answers_match_the_published_schema(collected):
    import jsonschema

    from chalicelib.api.apidocs import openapi_spec

    spec = openapi_spec()
    for path, name in [("/v1/consumers", "ConsumersPage"), ("/v1/consumers?sort=name", "ConsumersPage"),
                       ("/v1/consumers/alice", "ConsumerSummary"),
                       (f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&split=service", "ConsumerChart"),
                       (f"/v1/consumers/alice/bandwidth?start={T0}&end={T0 + 600}&service=pay", "ConsumerChart")]:
        status, body = get(collected, path)
        assert status == 200
        jsonschema.validate(body, {"$ref": f"#/components/schemas/{name}", "components": spec["components"]})
    documented = spec["paths"]
    assert {"/v1/consumers", "/v1/consumers/{consumer}", "/v1/consumers/{consumer}/bandwidth"} <= set(documented)
