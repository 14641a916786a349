"""Consumers through the real Prometheus binary (history built with promtool) and a moto server:
three consumers and anonymous traffic on two nodes (and an old 2.x node without a consumer
label), a gateway restart (counter reset) and a wiped Prometheus. Each consumer's total is
exact, and the consumers add up to the service's total.

Counters start at a lifetime value of a terabyte, so counting one from zero instead of from
the collector's checkpoint would show at once."""
from __future__ import annotations

import time

import pytest

from chalicelib import bootstrap
from chalicelib.api import charts
from chalicelib.core.periods import period_at
from chalicelib.core.usage import ANONYMOUS_CONSUMER
from tests.support.openmetrics import History

BASE = int(time.time() // 3600 * 3600) - 5 * 3600  # an hour boundary five hours ago
END = BASE + 5400
LIFETIME = 10**12
STEP = 15
RESTART = BASE + 1200  # node a restarts: every counter of node a starts again from 0
WIPED = (BASE + 1800, BASE + 2700)  # Prometheus lost its storage and scraped nothing meanwhile

# (consumer label, node, route, direction, bytes per scrape); None: a Kong 2.x node, no label
SERIES = [
    ("alice", "node-a:8001", "checkout", "egress", 1000),
    ("alice", "node-b:8001", "checkout", "egress", 300),
    ("alice", "node-b:8001", "refund", "ingress", 40),
    ("bob", "node-a:8001", "checkout", "egress", 70),
    ("bob", "node-b:8001", "refund", "egress", 11),
    ("carol", "node-a:8001", "refund", "ingress", 5),
    ("", "node-a:8001", "checkout", "egress", 9),
    ("", "node-b:8001", "checkout", "ingress", 13),
    (None, "node-old:8001", "checkout", "egress", 17),
]
SCRAPES = (END - BASE) // STEP  # every one of them adds its bytes to what is collected


def labels(consumer, node, route, direction):
    if consumer is None:
        return "kong_bandwidth", {"service": "pay", "route": route, "type": direction, "instance": node, "job": "kong"}
    return "kong_bandwidth_bytes", {"service": "pay", "route": route, "direction": direction, "consumer": consumer,
                                    "workspace": "default", "instance": node, "job": "kong"}


def counter(node, per_scrape, start, end, skip):
    """Samples every STEP s of a counter growing ``per_scrape`` a scrape from LIFETIME; node a
    restarts at RESTART (the counter holds only what it counted since)."""
    out = []
    for t in range(start, end, STEP):
        if skip(t):
            continue
        if node == "node-a:8001" and t >= RESTART:
            out.append((t, per_scrape * ((t - RESTART) // STEP + 1)))
        else:
            out.append((t, LIFETIME + per_scrape * (t - start) // STEP))
    return out


def history(end, skip=lambda t: False):
    h = History()
    for consumer, node, route, direction, per_scrape in SERIES:
        metric, series_labels = labels(consumer, node, route, direction)
        h.add(metric, series_labels, counter(node, per_scrape, BASE - 600, end, skip))
    return h


@pytest.fixture
def collect(aws_server, config, prometheus_factory):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=30, MAX_BACKFILL_MINUTES=1440,
               COLLECT_TRAFFIC_STATS="false", SERIES_LOOKBACK_SECONDS=600)

    def run(h: History, now: int):
        config.set(PROMETHEUS_URL=prometheus_factory.from_history(h.render()).url)
        report = config.start().collector.run(now=now)
        assert report.status == "ok", report

    return run


def expected():
    truth = {}
    for consumer, _, _, direction, per_scrape in SERIES:
        entry = truth.setdefault(consumer or ANONYMOUS_CONSUMER, {"ingress": 0, "egress": 0})
        entry[direction] += SCRAPES * per_scrape
    return truth


def test_each_consumer_is_exact_through_a_restart_and_a_wiped_prometheus_and_they_add_up(collect):
    collect(history(WIPED[0]), WIPED[0])  # 30 minutes collected, node a restarted inside them
    collect(history(END, skip=lambda t: WIPED[0] <= t < WIPED[1]), END)  # a fresh Prometheus
    store = bootstrap.current().store
    total = store.range_total("pay", BASE, END)  # an hour rollup and two quarters
    assert total.consumers == expected()
    assert total.consumers["alice"]["egress"] == SCRAPES * 1300  # not a terabyte, not short
    assert sum(e["ingress"] + e["egress"] for e in total.consumers.values()) == total.total
    assert total.total == SCRAPES * sum(s[-1] for s in SERIES)
    # Each consumer's period item (collect/consumers.py) holds the same exact figure; anonymous
    # traffic is no consumer and has none.
    if period_at("month", BASE) == period_at("month", END - 60):  # (not across a month's start)
        for consumer, entry in expected().items():
            items = store.get_consumer(consumer)
            got = {"ingress": sum(int(i.ingress) for i in items), "egress": sum(int(i.egress) for i in items)}
            assert got == (entry if consumer != ANONYMOUS_CONSUMER else {"ingress": 0, "egress": 0}), consumer
    # minute by minute too: every minute's consumers add up to its routes
    for bucket in store.query_buckets("pay", "1m", BASE, END):
        assert sum(e["ingress"] + e["egress"] for e in bucket.consumers.values()) == bucket.total, bucket.start
    # What flowed while Prometheus was empty lands in the first minute after it, per consumer too.
    (first_after,) = store.query_buckets("pay", "1m", WIPED[1], WIPED[1] + 60)
    assert first_after.consumers["carol"]["ingress"] == (60 + 4) * 5
    # The service chart split by consumer says the same at every step.
    coverage = charts.service_coverage(store, "pay", END + 60)
    for step in ("5m", "15m", "1h"):
        chart = charts.build_series(store, coverage, "pay", BASE, END, step, split="consumer")
        got = {}
        for s in chart["series"]:
            got.setdefault(s["consumer"], {})[s["direction"]] = s["total_bytes"]
        assert got == expected(), step
