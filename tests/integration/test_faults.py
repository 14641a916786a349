"""Faults with real local servers: DynamoDB throttling and errors (a fault-injecting proxy in
front of the moto server), overlapping runs, a Prometheus restart, and awkward Kong labels."""
import threading
import time

import pytest

from chalicelib import bootstrap
from chalicelib.collect.collector import CollectorRunFailed
from chalicelib.core.models import ServiceUsage, UsageBucket
from localrun.prometheus import PrometheusServer, build_tsdb
from tests.fakes.prometheus import FakePrometheus
from tests.support.faults import SERVER_ERROR, THROTTLED, FaultProxy
from tests.support.openmetrics import History, counter_samples
from tests.support.snapshot import table_snapshot

T0 = 1_796_083_200 - 3 * 3600


def fleet(services=40, minutes=30):
    """An in-memory Prometheus with `services` services of 100 B per 15 s scrape."""
    prom = FakePrometheus()
    for s in range(services):
        prom.add({"__name__": "kong_bandwidth_bytes", "service": f"svc-{s:02d}", "route": "r", "direction": "egress",
                  "consumer": "", "workspace": "default", "instance": "n1"},
                 counter_samples(T0 - 60, T0 + minutes * 60, 15, iter(lambda: 100, None)))
    return prom


def totals():
    return {i.service: int(i.total) for i in ServiceUsage.query("SERVICES")}




@pytest.fixture
def proxied(aws_server, config, moto_server):
    proxy = FaultProxy(moto_server).start()
    config.set(AWS_ENDPOINT_URL=proxy.url, COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=30,
               COLLECT_TRAFFIC_STATS="false")
    config.start()  # binds the models to the proxied endpoint
    yield proxy
    proxy.stop()


def collector_for(prom):
    return bootstrap.override(bootstrap.current().settings, prometheus=prom).collector


def expected_total():
    # Scrapes at T0-60 + 15k; the window [T0, T0+30m) holds 120 of them, each +100 B
    # (the series existed before the window, so only increments count).
    return 120 * 100


def test_throttling_is_retried_with_backoff_and_the_run_completes(proxied):
    prom = fleet()
    proxied.fail_next("BatchWriteItem", THROTTLED, THROTTLED)
    report = collector_for(prom).run(now=T0 + 1800)
    assert report.status == "ok"
    assert totals() == {f"svc-{s:02d}": expected_total() for s in range(40)}
    assert proxied.calls["BatchWriteItem"] >= 2 + 2  # the throttled attempts were made again


def test_a_run_dying_half_way_is_made_whole_by_the_next(proxied):
    prom = fleet()
    proxied.fail_next("BatchWriteItem", None)  # the first batch of minute items lands, then DynamoDB fails
    proxied.fail_always("BatchWriteItem", SERVER_ERROR)
    with pytest.raises(CollectorRunFailed):
        collector_for(prom).run(now=T0 + 1800)
    assert bootstrap.current().store.state().watermark == T0  # nothing was finalized...
    # ...although some items were written (the batches go out in parallel: any service's)
    assert sum(UsageBucket.count(f"USAGE#svc-{s:02d}") for s in range(40)) > 0
    proxied.heal()
    assert collector_for(prom).run(now=T0 + 1800).status == "ok"
    assert totals() == {f"svc-{s:02d}": expected_total() for s in range(40)}


def test_two_runs_at_once_leave_the_same_table_as_one(proxied):
    prom = fleet(services=10)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(collector_for(prom).run(now=T0 + 1800)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in reports) in (["ok", "skipped"], ["ok", "idle"])
    once = table_snapshot()
    assert totals() == {f"svc-{s:02d}": expected_total() for s in range(10)}
    collector_for(prom).run(now=T0 + 1800)
    assert table_snapshot() == once


LABELS = [('quo"te', "r 1"), ("spa ce", "ünïcødé/路由"), ("back\\slash", "new-name")]


def test_prometheus_restart_backfills_and_awkward_labels_are_plain_text(aws_server, config, tmp_path):
    base = int(time.time() // 3600 * 3600) - 5 * 3600
    history, truth = History(), {}
    for service, route in LABELS:
        labels = {"service": service, "route": route, "direction": "ingress", "consumer": "", "workspace": "default",
                  "instance": "n1"}
        # the node vanishes for 20 minutes and comes back restarted (counters from zero)
        before = counter_samples(base - 300, base + 1800, 15, iter(lambda: 11, None))
        after = counter_samples(base + 3000, base + 7200, 15, iter(lambda: 13, None))
        history.add("kong_bandwidth_bytes", labels, before + after)
        truth[service] = 120 * 11 + len(after) * 13
    renamed = {"service": "spa ce", "route": "old-name", "direction": "ingress", "consumer": "",
               "workspace": "default", "instance": "n1"}
    history.add("kong_bandwidth_bytes", renamed, counter_samples(base - 300, base + 600, 15, iter(lambda: 5, None)))
    truth["spa ce"] += 40 * 5
    data_dir = str(tmp_path / "tsdb")
    build_tsdb(history.render(), data_dir)
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=60, COLLECT_TRAFFIC_STATS="false")
    prometheus = PrometheusServer(data_dir=data_dir).start().wait_ready()
    try:
        config.set(PROMETHEUS_URL=prometheus.url)
        config.start()
        bootstrap.current().collector.run(now=base + 3600)
        port = prometheus.port
        prometheus.stop()  # Prometheus is down for the next run...
        with pytest.raises(CollectorRunFailed):
            bootstrap.current().collector.run(now=base + 5400)
        prometheus = PrometheusServer(data_dir=data_dir, port=port).start().wait_ready()  # ...and back
        assert bootstrap.current().collector.run(now=base + 7200).minutes == 60
    finally:
        prometheus.stop()
    assert totals() == truth
    routes = bootstrap.current().store.range_total("spa ce", base, base + 7200).routes
    assert set(routes) == {"ünïcødé/路由", "old-name"}
