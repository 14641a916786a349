"""PROMETHEUS_SERIES_SELECTOR against the real Prometheus binary (history built with promtool)
and a moto server process: a shared Prometheus holds two jobs' series, the gateways' (job
"kong") and another target's (job "sidecar") that publishes Kong's metric names for a victim
service. With the selector only the kong job's bytes count, unsharded and sharded (the
catch-all's label-values call included); without it the forged bytes count too."""
import time

import pytest

from chalicelib.core.models import UsageBucket
from tests.support.openmetrics import History, counter_samples

BASE = int(time.time() // 3600 * 3600) - 2 * 3600
STEP = 15
KONG_BYTES, FORGED_BYTES = 10, 1_000_000


def labels(service, job, instance):
    return {"service": service, "route": "r", "direction": "egress", "consumer": "", "workspace": "default",
            "instance": instance, "job": job}


def scenario():
    history = History()
    for service in ("pay", "victim"):
        history.add("kong_bandwidth_bytes", labels(service, "kong", "kong-a:8001"),
                    counter_samples(BASE - 600, BASE + 3600, STEP, iter(lambda: KONG_BYTES, None)))
    # Another scrape target of the same Prometheus forges a series for the victim (and for a
    # service that exists nowhere else, which must not even be learnt as a name).
    for service in ("victim", "phantom"):
        history.add("kong_bandwidth_bytes", labels(service, "sidecar", "sidecar:9100"),
                    counter_samples(BASE - 600, BASE + 3600, STEP, iter(lambda: FORGED_BYTES, None)))
    return history.render()


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    return prometheus_factory.from_history(scenario())


def egress_in(service, start, end):
    return sum(int(i.egress) for i in UsageBucket.query(f"USAGE#{service}", UsageBucket.sk.startswith("1m#"))
               if start <= int(i.start) < end)


def collect(deps, shard_count, end):
    """Run every shard every ten minutes up to ``end``; the minutes collected, [start, watermark)."""
    for now in range(BASE + 31, end + 31, 600):
        for shard in range(shard_count):
            (deps.collector_for(shard) if shard_count > 1 else deps.collector).run(now=now)
    state = deps.store.state()
    return int(state.collection_start), int(state.watermark)


SCRAPES_A_MINUTE = 60 // STEP


@pytest.mark.parametrize("shard_count", [1, 3])
def test_with_the_selector_only_the_kong_jobs_bytes_count(aws_server, config, prometheus, shard_count):
    deps = config.set(PROMETHEUS_URL=prometheus.url, COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=0,
                      COLLECT_TRAFFIC_STATS="false", SHARD_COUNT=shard_count,
                      PROMETHEUS_SERIES_SELECTOR='{job="kong"}').start()
    start, end = collect(deps, shard_count, BASE + 1800)
    kong_truth = (end - start) // 60 * SCRAPES_A_MINUTE * KONG_BYTES
    assert end - start >= 1200 and kong_truth > 0
    assert egress_in("pay", start, end) == kong_truth
    assert egress_in("victim", start, end) == kong_truth
    assert egress_in("phantom", BASE - 3600, BASE + 3600) == 0


def test_without_a_selector_the_forged_series_count(aws_server, config, prometheus):
    """What the selector is for: the same data without it charges the victim a million bytes a scrape."""
    deps = config.set(PROMETHEUS_URL=prometheus.url, COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=0,
                      COLLECT_TRAFFIC_STATS="false").start()
    start, end = collect(deps, 1, BASE + 1800)
    minutes = (end - start) // 60
    assert egress_in("victim", start, end) == minutes * SCRAPES_A_MINUTE * (KONG_BYTES + FORGED_BYTES)
    assert egress_in("phantom", start, end) == minutes * SCRAPES_A_MINUTE * FORGED_BYTES


def test_the_selector_narrows_label_values_too(aws_server, config, prometheus):
    deps = config.set(PROMETHEUS_URL=prometheus.url, PROMETHEUS_SERIES_SELECTOR='job="kong"').start()
    assert sorted(deps.prometheus.label_values("service", "kong_bandwidth_bytes", BASE, BASE + 600)) == ["pay", "victim"]
    status = deps.prometheus.scoped('{__name__=~"kong_bandwidth|kong_bandwidth_bytes"}')
    assert status == '{__name__=~"kong_bandwidth|kong_bandwidth_bytes",job="kong"}'
