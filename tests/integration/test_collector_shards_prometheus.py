"""Sharded collection against the real Prometheus binary (history built with promtool) and a
moto server process: every query a shard sends is valid PromQL that selects exactly its
services (names that need escaping included), and the totals are exact minute by minute,
for services handed from the catch-all shard to a fixed one and for traffic that matched no
Kong service."""
import time

import pytest

from chalicelib import bootstrap
from chalicelib.collect import shards
from chalicelib.core.models import UsageBucket
from tests.support.openmetrics import History, counter_samples

BASE = int(time.time() // 3600 * 3600) - 3 * 3600
STEP = 15
NAMES = ["pay", "pay.v2", "a+b", "search (beta)", 'quote"d|pipe', "back\\slash", "ünïcode", "late"]


def labels(service, instance="node-a:8001"):
    out = {"route": "r", "direction": "egress", "consumer": "", "workspace": "default", "instance": instance,
           "job": "kong"}
    if service is not None:
        out["service"] = service
    return out


def scenario():
    history, truth = History(), {}
    for n, service in enumerate(NAMES + [None]):
        born = BASE + 1800 if service == "late" else BASE - 600
        samples = counter_samples(born, BASE + 2 * 3600, STEP, iter(lambda n=n: 10 + n, None))
        history.add("kong_bandwidth_bytes", labels(service), samples)
        name = service or "(unmatched)"
        for i, (t, v) in enumerate(samples):
            if t >= BASE and (i > 0 or service == "late"):
                truth[(name, t // 60 * 60)] = truth.get((name, t // 60 * 60), 0) + 10 + n
    return history.render(), truth


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    text, truth = scenario()
    return prometheus_factory.from_history(text), truth


@pytest.fixture
def sharded(aws_server, config, prometheus):
    server, truth = prometheus
    config.set(PROMETHEUS_URL=server.url, COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=0,
               COLLECT_TRAFFIC_STATS="false", SHARD_COUNT=4).start()
    return truth


def test_four_shards_are_exact_minute_by_minute_against_prometheus(sharded, monkeypatch):
    truth = sharded
    monkeypatch.setattr(shards, "SERVICE_GROUP", 3)  # several queries per shard
    deps = bootstrap.current()
    for now in range(BASE + 31, BASE + 2 * 3600 + 31, 600):
        for shard in (2, 0, 3, 1):
            deps.collector_for(shard).run(now=now)
    end = BASE + 2 * 3600 - 600
    for name in NAMES + ["(unmatched)"]:
        stored = {int(i.start): int(i.egress) for i in UsageBucket.query(f"USAGE#{name}", UsageBucket.sk.startswith("1m#"))}
        for m in range(BASE, end, 60):
            assert stored.get(m, 0) == truth.get((name, m), 0), (name, m)
    owners = {service: n for n, item in deps.store.assignments(4).items() for service in (item.services or ())}
    assert set(owners) == set(NAMES)  # unmatched traffic stays with the catch-all


def test_label_values_name_the_services_in_a_window(sharded):
    client = bootstrap.current().prometheus
    names = client.label_values("service", "kong_bandwidth_bytes", BASE, BASE + 600)
    assert set(NAMES) - {"late"} <= set(names)
