"""One consumer's figure between two writes, through real HTTP (`chalice local` on a moto server):
its items hold what it did up to the last multiple of CONSUMER_WRITE_MINUTES; GET
/v1/consumers/{c} adds the stored minutes since, so it agrees with the minutes (and its chart),
while the listing shows the items as written."""
import dataclasses
import time

import pytest
import requests

from tests.support.keyed_api import keyed_api

PER_MINUTE = {"pay": 1000, "search": 300}  # alice's egress bytes a minute on each service
PAST_MULTIPLE = 3  # minutes collected after the last multiple of ten


def seed():
    from chalicelib import bootstrap
    from chalicelib.core.periods import period_at
    from tests.fakes.prometheus import FakePrometheus

    multiple = int(time.time() // 600 * 600) - 600
    first, end = multiple - 600, multiple + 60 * PAST_MULTIPLE
    prom = FakePrometheus()
    for service, per_minute in PER_MINUTE.items():
        labels = {"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": "egress",
                  "consumer": "alice", "workspace": "default", "instance": "a:8001", "job": "kong"}
        # From before the first run's backfill: a lifetime counted before, not counted again.
        prom.add(labels, [(t, 10**9 + per_minute * (t - first + 4000) // 60) for t in range(first - 4000, end + 60, 15)])
    settings = dataclasses.replace(bootstrap.current().settings, consumer_write_minutes=10)
    deps = bootstrap.override(settings, prometheus=prom)
    for minute_end in range(first + 60, end + 60, 60):
        assert deps.collector.run(now=minute_end).status == "ok"
    period_start = period_at("month", time.time(), 1).start  # what the API counts: this month

    def truth(until):
        return sum(b.consumers["alice"]["egress"] for service in PER_MINUTE
                   for b in deps.store.query_buckets(service, "1m", period_start, until))
    return multiple, end, truth(multiple), truth(end)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("consumer-tail"), {"STAGE": "dev"}) as running:
        running.multiple, running.end, running.at_multiple, running.now = seed()
        yield running


def test_a_consumers_page_adds_the_minutes_since_its_last_write_and_the_listing_shows_the_write(api):
    assert api.now > api.at_multiple  # 0 when the month began after the multiple
    body = requests.get(f"{api.url}/v1/consumers/alice", timeout=30).json()
    assert body["usage"]["egress"] == api.now
    assert sum(s["egress"] for s in body["services"].values()) == api.now
    listing = requests.get(f"{api.url}/v1/consumers?sort=name", timeout=30).json()
    row = next(c for c in listing["consumers"] if c["consumer"] == "alice")
    assert row["usage"]["egress"] == api.at_multiple
