"""The consumers API through real HTTP (`chalice local` on a moto server), over usage the real
collector counted one minute at a time (consumer items written every ten minutes without a quota,
as in AWS) through a gateway restart: a consumer's period usage is exactly its minute bytes, its chart adds up to it at
every step, keys are percent-decoded, CSV and errors are as for services."""
import dataclasses
import time
from urllib.parse import quote

import pytest
import requests

from tests.support.keyed_api import keyed_api

# (service, consumer, direction, bytes a minute); "ops/search": the search service of workspace ops,
# whose consumer carol is keyed ops:carol
TRAFFIC = [("pay", "alice", "egress", 1000), ("search", "alice", "egress", 300), ("pay", "bob", "ingress", 70),
           ("ops/search", "carol", "egress", 5), ("pay", "dev team", "egress", 9), ("pay", "", "egress", 11)]
MINUTES = 20


def seed():
    """Collect MINUTES minutes ending on a multiple of ten minutes before now (where every
    consumer is written): a first run backfilling in a long chunk, then one run a minute. Node a
    restarts half-way (its counters start again at 0)."""
    from chalicelib import bootstrap
    from tests.fakes.prometheus import FakePrometheus

    end = int(time.time() // 600 * 600) - 600
    first = end - 60 * MINUTES
    restart = first + 60 * 9
    prom = FakePrometheus()
    for service, consumer, direction, per_minute in TRAFFIC:
        workspace, _, service = service.rpartition("/")
        labels = {"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": direction,
                  "consumer": consumer, "workspace": workspace or "default", "instance": "a:8001", "job": "kong"}
        samples = []
        for t in range(first - 4000, end, 15):  # from before the first run's backfill: a lifetime counted before
            if t < restart:
                samples.append((t, 10**12 + per_minute * (t - first + 4000) // 60))
            else:
                samples.append((t, per_minute * (t - restart + 15) // 60))
        prom.add(labels, samples)
    # As in AWS: consumers without a quota written every ten minutes (the API reads what is stored).
    settings = dataclasses.replace(bootstrap.current().settings, consumer_write_minutes=10)
    deps = bootstrap.override(settings, prometheus=prom)
    assert deps.collector.run(now=first + 300).status == "ok"
    for minute_end in range(first + 360, end + 60, 60):
        assert deps.collector.run(now=minute_end).status == "ok"
    store = deps.store
    truth = {}
    for service in ("pay", "search", "ops:search"):
        for bucket in store.query_buckets(service, "1m", 0, end):
            for consumer, entry in bucket.consumers.items():
                got = truth.setdefault(consumer, {"ingress": 0, "egress": 0})
                got["ingress"] += entry["ingress"]
                got["egress"] += entry["egress"]
    return end, truth


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("consumers"), {"STAGE": "dev"}) as running:
        running.end, running.truth = seed()
        yield running


def get(api, path, **kwargs):
    return requests.get(f"{api.url}{path}", timeout=30, **kwargs)


def test_each_consumers_period_usage_is_exactly_its_minute_bytes(api):
    for consumer in ("alice", "bob", "ops:carol", "dev team"):
        body = get(api, "/v1/consumers/" + quote(consumer, safe="")).json()
        truth = api.truth[consumer]
        assert body["usage"] == {**truth, "total": truth["ingress"] + truth["egress"]}, consumer
    alice = get(api, "/v1/consumers/alice").json()
    assert alice["usage"]["egress"] < 10**11  # the restart counted no lifetime
    assert set(alice["services"]) == {"pay", "search"}
    assert sum(s["total"] for s in alice["services"].values()) == alice["usage"]["total"]


@pytest.mark.parametrize("step", ["1m", "5m", "1h", "1d"])
def test_the_chart_adds_up_to_the_period_usage_at_every_step(api, step):
    from chalicelib.core.timeutil import parse_time

    summary = get(api, "/v1/consumers/alice").json()
    start, end = parse_time(summary["period"]["start"]), min(parse_time(summary["period"]["end"]), api.end)
    if step == "1m":
        start = api.end - 60 * MINUTES - 3600
    body = get(api, f"/v1/consumers/alice/bandwidth?start={start}&end={end}&step={step}").json()
    assert {s["direction"]: s["total_bytes"] for s in body["series"]} == {
        d: summary["usage"][d] for d in ("ingress", "egress")}


def test_the_listing_is_json_with_its_ranking_time(api):
    body = get(api, "/v1/consumers").json()
    assert [c["consumer"] for c in body["consumers"]] == ["alice", "bob", "dev team", "ops:carol"]
    assert body["ranked_at"].endswith("Z") and body["total_count"] == 4
    names = get(api, "/v1/consumers?sort=name&order=asc&limit=3").json()
    assert [c["consumer"] for c in names["consumers"]] == ["alice", "bob", "dev team"] and names["next_cursor"]
    rest = get(api, f"/v1/consumers?sort=name&order=asc&limit=3&cursor={names['next_cursor']}").json()
    assert [c["consumer"] for c in rest["consumers"]] == ["ops:carol"] and rest["next_cursor"] is None


def test_csv_and_errors(api):
    query = f"start={api.end - 600}&end={api.end}&step=5m&direction=egress&split=service"
    by_header = get(api, f"/v1/consumers/alice/bandwidth?{query}", headers={"Accept": "text/csv"})
    assert by_header.headers["Content-Type"].startswith("text/csv")
    lines = by_header.text.splitlines()
    chart = get(api, f"/v1/consumers/alice/bandwidth?{query}").json()
    assert lines[0] == "time,consumer,service,direction,bytes,partial"
    assert lines[1:] == [f"{p['time']},alice,{s['service']},egress,{p['bytes']},{str(p['partial']).lower()}"
                         for s in chart["series"] for p in s["points"]]
    for path, status in [("/v1/consumers/nobody", 404), ("/v1/consumers/alice/bandwidth?step=7m", 400),
                         ("/v1/consumers?sort=size", 400), ("/v1/consumers/a%0Ab", 400)]:
        response = get(api, path)
        assert response.status_code == status and response.json()["error"]["message"], path
