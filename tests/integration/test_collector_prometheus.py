"""The collector against the real Prometheus binary (exact history built with promtool)
and a moto server process: totals are exact across resets, nodes, new series, gaps and
backfill, and a rerun of the same window leaves the table unchanged."""
import time

import pytest

from chalicelib import bootstrap
from chalicelib.core.models import CollectorState, UsageBucket
from tests.support.snapshot import table_snapshot
from tests.support.openmetrics import History, counter_samples


BASE = int(time.time() // 3600 * 3600) - 6 * 3600  # an hour boundary, six hours ago
STEP = 15


def kong(service, route, direction, instance):
    return {"service": service, "route": route, "direction": direction, "consumer": "",
            "workspace": "default", "instance": instance, "job": "kong"}


def scenario():
    """Samples and the exact truth per (service, direction, minute)."""
    history, truth = History(), {}

    def add(labels, samples, increments_by_time):
        history.add("kong_bandwidth_bytes", labels, samples)
        for t, inc in increments_by_time.items():
            key = (labels["service"], labels["direction"], t // 60 * 60)
            truth[key] = truth.get(key, 0) + inc

    # node a: 1000 B per scrape, restarted at BASE+60m, no scrapes BASE+90m..BASE+100m (Prometheus down)
    times = [t for t in range(BASE - 600, BASE + 3 * 3600, STEP) if not BASE + 5400 <= t < BASE + 6000]
    samples, total, incs = [], 0, {}
    for i, t in enumerate(times):
        if t == BASE + 3600:
            total = 0
        step_inc = 1000 * (40 if t == BASE + 6000 else 1)  # the scrape after the gap carries 40 scrapes' bytes
        total += step_inc
        samples.append((t, total))
        if i > 0:
            incs[t] = step_inc if t != BASE + 3600 else 1000  # a reset counts the new value
    add(kong("pay", "checkout", "egress", "node-a:8001"), samples, incs)
    # node b: born at BASE+30m, 7 B per scrape; its first value counts
    samples = counter_samples(BASE + 1800, BASE + 3 * 3600, STEP, iter(lambda: 7, None))
    add(kong("pay", "checkout", "egress", "node-b:8001"), samples, {t: 7 for t, _ in samples})
    # search: 3 B per scrape for 20 minutes, idle for 100 minutes, then 5 B per scrape
    incs = [3 if t < BASE + 1200 else 0 if t < BASE + 7200 else 5 for t in range(BASE - 600, BASE + 3 * 3600, STEP)]
    samples = counter_samples(BASE - 600, BASE + 3 * 3600, STEP, iter(incs))
    add(kong("search", "q", "ingress", "node-a:8001"), samples,
        {t: inc for (t, _), inc in zip(samples, incs) if t >= BASE - 600 + STEP})
    return history.render(), truth


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    text, truth = scenario()
    return prometheus_factory.from_history(text), truth


@pytest.fixture
def collector_env(aws_server, config, prometheus):
    server, truth = prometheus
    config.set(PROMETHEUS_URL=server.url, COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=60,
               MAX_BACKFILL_MINUTES=600, COLLECT_TRAFFIC_STATS="false").start()
    return truth


def window_truth(truth, service, direction, start, end):
    return sum(v for (s, d, m), v in truth.items() if s == service and d == direction and start <= m < end)


def minutes(service):
    return {int(i.start): i for i in UsageBucket.query(f"USAGE#{service}", UsageBucket.sk.startswith("1m#"))}




def test_totals_are_exact_across_resets_nodes_new_series_gaps_and_backfill(collector_env):
    truth = collector_env
    collector = bootstrap.current().collector
    first = collector.run(now=BASE + 3600 + 31)
    assert first.status == "ok" and (first.start, first.minutes) == (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE)), 60)
    # The collector then misses two hours; the next run backfills from the watermark.
    second = collector.run(now=BASE + 3 * 3600 + 31)
    assert second.minutes == 120
    pay = minutes("pay")
    assert sum(int(i.egress) for i in pay.values()) == window_truth(truth, "pay", "egress", BASE, BASE + 3 * 3600)
    for m in range(BASE, BASE + 3 * 3600, 60):  # minute by minute, not only in sum
        assert (int(pay[m].egress) if m in pay else 0) == window_truth(truth, "pay", "egress", m, m + 60), m
    search = minutes("search")
    assert sum(int(i.ingress) for i in search.values()) == window_truth(truth, "search", "ingress", BASE, BASE + 10800)
    assert not any(BASE + 1200 <= m < BASE + 7200 for m in search), "idle minutes cost no items"
    store = bootstrap.current().store
    for hour in range(BASE, BASE + 3 * 3600, 3600):
        (rollup,) = store.query_buckets("pay", "1h", hour, hour + 3600)
        assert rollup.egress == window_truth(truth, "pay", "egress", hour, hour + 3600)
    state = store.state()
    assert int(state.watermark) == BASE + 3 * 3600 and state.last_error is None


def test_rerunning_a_window_leaves_the_table_unchanged(collector_env):
    collector = bootstrap.current().collector
    collector.run(now=BASE + 2 * 3600 + 31)
    before = table_snapshot(checkpoints=False)
    # Put the watermark back past several chunks: the checkpoints are then newer than the
    # window, so the rerun counts from Prometheus history and must land on the same values.
    CollectorState("STATE", "collector").update(actions=[CollectorState.watermark.set(BASE + 3600 + 1200)])
    collector.run(now=BASE + 2 * 3600 + 31)
    assert table_snapshot(checkpoints=False) == before


def test_prometheus_down_fails_cleanly_and_holds_the_watermark(collector_env, config):
    config.set(PROMETHEUS_URL="http://127.0.0.1:9", PROMETHEUS_TIMEOUT_SECONDS=1).start()  # nothing listens there
    from chalicelib.collect.collector import CollectorRunFailed

    with pytest.raises(CollectorRunFailed, match="unreachable"):
        bootstrap.current().collector.run(now=BASE + 3600 + 31)
    state = bootstrap.current().store.state()
    assert int(state.watermark) == BASE and "unreachable" in state.last_error
    assert minutes("pay") == {}
