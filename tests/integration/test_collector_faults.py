"""The collector through real faults, against the real Prometheus binary (history built with promtool)
and a moto server: a wiped Prometheus, a node silent longer than any look-back, a sample that
arrives after its window was collected, and bad series beside healthy ones.

Each gateway counter starts at a lifetime value of a terabyte, so counting a counter from zero
instead of from the collector's checkpoint would show at once."""
from __future__ import annotations

import time

import pytest

from chalicelib import bootstrap
from chalicelib.api.status import collector_status
from tests.support.openmetrics import History

BASE = int(time.time() // 3600 * 3600) - 5 * 3600  # an hour boundary five hours ago
LIFETIME = 10**12
STEP = 15


def kong(service, route="r", direction="egress", instance="node-a:8001"):
    labels = {"service": service, "route": route, "direction": direction, "consumer": "", "workspace": "default",
              "instance": instance, "job": "kong"}
    return {k: v for k, v in labels.items() if v is not None}


def counter(start, end, per_scrape, skip=lambda t: False, first=LIFETIME):
    """Samples every STEP s in [start, end) of a counter growing ``per_scrape`` a scrape, from
    ``first`` at ``start``; ``skip(t)`` drops a scrape (not stored) but the bytes still flow."""
    return [(t, first + per_scrape * (t - start) // STEP) for t in range(start, end, STEP) if not skip(t)]


@pytest.fixture
def collect(aws_server, config, prometheus_factory):
    """Run the collector at ``now`` against a Prometheus serving ``history``."""
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=30, MAX_BACKFILL_MINUTES=1440,
               COLLECT_TRAFFIC_STATS="false", SERIES_LOOKBACK_SECONDS=600)

    def run(history: History, now: int, prometheus=None):
        prometheus = prometheus or prometheus_factory.from_history(history.render())
        config.set(PROMETHEUS_URL=prometheus.url)
        report = config.start().collector.run(now=now)
        assert report.status == "ok", report
        return prometheus

    return run


def egress(service, start, end):
    return bootstrap.current().store.range_total(service, start, end).egress


def test_a_wiped_prometheus_counts_neither_the_lifetime_counter_nor_loses_the_gap(collect):
    # Phase one: 30 minutes collected; each node sends 100 B a scrape.
    before = History()
    for node in ("node-a:8001", "node-b:8001"):
        before.add("kong_bandwidth_bytes", kong("pay", instance=node), counter(BASE - 600, BASE + 1800, 100))
    collect(before, BASE + 1800)
    # Prometheus loses its storage at BASE+30m and scrapes again from BASE+45m; the gateway kept counting.
    after = History()
    for node in ("node-a:8001", "node-b:8001"):
        after.add("kong_bandwidth_bytes", kong("pay", instance=node),
                  counter(BASE - 600, BASE + 5400, 100, skip=lambda t: t < BASE + 2700))
    collect(after, BASE + 5400)
    # Exact: 2 nodes x 360 scrapes x 100 B over the 90 minutes, none of the terabyte counted.
    assert egress("pay", BASE, BASE + 5400) == 2 * 360 * 100
    # What flowed unobserved lands in the first minute after the gap, and the gap is recorded.
    assert egress("pay", BASE + 2700, BASE + 2760) == 2 * (60 + 4) * 100
    gaps = bootstrap.current().store.state().gaps
    assert [[int(a), int(b)] for a, b in gaps] == [[BASE + 1800, BASE + 2700]]


def test_a_node_silent_longer_than_any_lookback_resumes_from_the_checkpoint(collect):
    history = History()
    # node a is not scraped from BASE+20m to BASE+100m (80 minutes, lookback 10), then returns unreset
    history.add("kong_bandwidth_bytes", kong("pay"),
                counter(BASE - 600, BASE + 9000, 100, skip=lambda t: BASE + 1200 <= t < BASE + 6000))
    history.add("kong_bandwidth_bytes", kong("pay", instance="node-b:8001"), counter(BASE - 600, BASE + 9000, 7))
    prometheus = None
    for now in (BASE + 1800, BASE + 3600, BASE + 5400, BASE + 9000):
        prometheus = collect(history, now, prometheus)
    assert egress("pay", BASE, BASE + 9000) == 600 * 100 + 600 * 7
    # node b was observed all along, so nothing was a gap; node a's silence lands when it returns
    assert not bootstrap.current().store.state().gaps
    assert egress("pay", BASE + 6000, BASE + 6060) == (320 + 4) * 100 + 4 * 7


def test_a_sample_that_arrives_after_its_window_was_collected_counts_once(collect):
    # The node's last samples (BASE+28m..30m) reach Prometheus only after the collector ran for BASE+30m
    # (remote write, a slow agent); then the node is gone for good.
    on_time = History().add("kong_bandwidth_bytes", kong("pay"),
                            counter(BASE - 600, BASE + 1680, 100))
    collect(on_time, BASE + 1800)
    complete = History().add("kong_bandwidth_bytes", kong("pay"), counter(BASE - 600, BASE + 1800, 100))
    complete.add("kong_bandwidth_bytes", kong("other"), counter(BASE - 600, BASE + 3600, 1))
    collect(complete, BASE + 3600)
    assert egress("pay", BASE, BASE + 3600) == 120 * 100
    # counted in the first minute collected after it arrived
    assert egress("pay", BASE + 1800, BASE + 1860) == 8 * 100


def test_bad_series_are_quarantined_and_the_healthy_ones_stay_exact(collect, config):
    history = History()
    history.add("kong_bandwidth_bytes", kong("healthy"), counter(BASE - 600, BASE + 1800, 100))
    history.add("kong_bandwidth_bytes", kong("nan"),
                [(t, float("nan")) for t in range(BASE - 600, BASE + 1800, STEP)])
    history.add("kong_bandwidth_bytes", kong("negative"), [(t, -5) for t in range(BASE - 600, BASE + 1800, STEP)])
    history.add("kong_bandwidth_bytes", kong("nodirection", direction=None), counter(BASE - 600, BASE + 1800, 3))
    history.add("kong_bandwidth_bytes", kong("x" * 2000), counter(BASE - 600, BASE + 1800, 9))
    collect(history, BASE + 1800)
    assert egress("healthy", BASE, BASE + 1800) == 120 * 100
    deps = bootstrap.current()
    assert [item.service for item in deps.store.list_services()] == ["healthy"]
    status = collector_status(deps.store.state(), deps.settings, BASE + 1800)
    assert status["quarantined_count"] == 4 and status["watermark"] is not None
    reasons = {entry["series"].split("service=")[1][:12]: entry["reason"] for entry in status["quarantined"]}
    assert "nan" in reasons["'nan',worksp"]
    assert "-5" in reasons["'negative',w"]
    assert "direction" in reasons["'nodirection"]
    assert "200 characters" in reasons["'xxxxxxxxxxx"]
    assert all(len(entry["series"]) <= 303 for entry in status["quarantined"])
