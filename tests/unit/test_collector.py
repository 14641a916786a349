"""The collector against moto in-process and an in-memory Prometheus with exact raw samples."""
import pytest

from chalicelib import bootstrap
from chalicelib.collect.collector import CollectorRunFailed
from chalicelib.core.models import UsageBucket
from chalicelib.core.store import decompose
from tests.support.snapshot import table_snapshot
from tests.fakes.prometheus import FakePrometheus


DAY0 = 1_796_083_200  # 2026-12-01T00:00Z, a month boundary
T0 = DAY0 - 3600  # 2026-11-30T23:00Z


def kong3(service, route, direction, instance="node-a:8001"):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": route, "direction": direction,
            "consumer": "", "workspace": "default", "instance": instance, "job": "kong"}


def scrape(start, end, every, values):
    """Samples every `every` seconds with cumulative values from an iterator of increments."""
    out, total, it = [], 0, iter(values)
    for t in range(start, end, every):
        total += next(it)
        out.append((t, total))
    return out


@pytest.fixture
def collector(aws, config):
    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=60)
    fake = FakePrometheus()
    return config.start(prometheus=fake).collector, fake


def stored_minutes(service):
    return {int(i.start): (int(i.ingress), int(i.egress)) for i in UsageBucket.query(f"USAGE#{service}")
            if i.level == "1m"}




def test_exact_totals_across_nodes_resets_and_born_series(collector):
    col, prom = collector
    # node a: steady 100 B every 15 s, restarted (reset) at T0+30m
    a = scrape(T0 - 600, T0 + 1800, 15, iter(lambda: 100, None))
    a += [(t, v) for t, v in scrape(T0 + 1800, T0 + 3600, 15, iter(lambda: 7, None))]
    prom.add(kong3("pay", "checkout", "egress"), a)
    # node b: born at T0+10m, counts its first value
    prom.add(kong3("pay", "checkout", "egress", "node-b:8001"), scrape(T0 + 600, T0 + 3600, 15, iter(lambda: 3, None)))
    prom.add(kong3("pay", "refund", "ingress"), [(T0 - 60, 5000), (T0 + 120, 5600), (T0 + 125, 5600)])

    report = col.run(now=T0 + 3600 + 30 + 1)
    assert report.status == "ok" and report.minutes == 60
    # node a: 120 samples of +100 before the reset, then 7 (the reset) and 119 x +7; node b: 200 x +3
    truth_egress = 120 * 100 + 120 * 7 + 200 * 3
    minutes = stored_minutes("pay")
    assert sum(e for _, e in minutes.values()) == truth_egress
    assert sum(i for i, _ in minutes.values()) == 600
    assert minutes[T0 + 120] == (600, 100 * 4)


def test_rerunning_the_same_window_changes_nothing(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 3600, 15, iter(lambda: 10, None)))
    col.run(now=T0 + 1800 + 31)
    before = table_snapshot(checkpoints=False)
    state = bootstrap.current().store.state()
    # Put the watermark back past several chunks and run again over the same minutes: the
    # checkpoints are then newer than the window, so the run counts from Prometheus history.
    from chalicelib.core.models import CollectorState
    CollectorState("STATE", "collector").update(actions=[CollectorState.watermark.set(T0 + 600)])
    col.run(now=T0 + 1800 + 31)
    assert table_snapshot(checkpoints=False) == before
    assert bootstrap.current().store.state().watermark == state.watermark


def test_prometheus_error_holds_the_watermark_and_records_the_error(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 600, 15, iter(lambda: 10, None)))
    col.run(now=T0 + 300 + 31)
    watermark = bootstrap.current().store.state().watermark
    prom.fail_with = "connection refused"
    with pytest.raises(CollectorRunFailed):
        col.run(now=T0 + 600 + 31)
    state = bootstrap.current().store.state()
    assert state.watermark == watermark
    assert "connection refused" in state.last_error and state.running_since is None
    prom.fail_with = None
    col.run(now=T0 + 600 + 31)
    # the series was born inside the first window: all 60 samples of +10 count, no gap, no double count
    assert sum(e for _, e in stored_minutes("pay").values()) == 60 * 10


def test_a_nan_series_is_quarantined_and_the_others_are_collected(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), [(T0 - 30, 10), (T0 + 10, float("nan"))])
    prom.add(kong3("ok", "r", "egress"), [(T0 - 30, 10), (T0 + 10, 25)])
    report = col.run(now=T0 + 120 + 31)
    assert report.status == "ok" and stored_minutes("pay") == {} and stored_minutes("ok") == {T0 - 60: (0, 10), T0: (0, 15)}
    state = bootstrap.current().store.state()
    assert state.quarantined_count == 1 and "nan" in state.quarantined[0]["reason"]
    assert "service='pay'" in state.quarantined[0]["series"] and state.watermark == T0 + 120


def test_a_run_with_no_minute_to_collect_keeps_the_last_runs_figures(collector):
    """make run collects every COLLECT_INTERVAL seconds; most of those runs find no whole minute."""
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), [(T0 - 30, 10), (T0 + 10, float("nan"))])
    prom.add(kong3("ok", "r", "egress"), [(T0 - 30, 10), (T0 + 10, 25)])
    col.run(now=T0 + 120 + 31)
    idle = col.run(now=T0 + 120 + 45)
    state = bootstrap.current().store.state()
    assert idle.status == "idle" and state.last_run_end is not None
    assert (state.last_series_seen, state.last_minutes_written, state.quarantined_count) == (2, 2, 1)


def test_rollups_equal_the_sum_of_their_minutes(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 3600, 20, iter(lambda: 9, None)))
    col.run(now=T0 + 3600 + 31)
    store = bootstrap.current().store
    hour = store.query_buckets("pay", "1h", T0, T0 + 3600)
    fives = store.query_buckets("pay", "5m", T0, T0 + 3600)
    assert [b.start for b in hour] == [T0]
    assert hour[0].egress == sum(b.egress for b in fives) == 9 * 180
    assert len(fives) == 12 and all(b.egress == 9 * 15 for b in fives)


def test_period_total_resets_at_month_rollover_inside_one_run(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, DAY0 + 1200, 60, iter(lambda: 1000, None)))
    col.run(now=DAY0 + 600 + 31)
    item = bootstrap.current().store.get_service("pay")
    assert item.period_start == DAY0
    assert item.total == 1000 * 10  # only December's ten minutes
    assert item.through == DAY0 + 600


def test_a_quota_that_changes_its_period_kind_realigns_an_idle_service_once(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 600, 60, iter(lambda: 1000, None)))
    col.run(now=T0 + 600 + 31)  # fifteen scrapes of 1000 B (the series is born in the window), counted monthly
    deps = bootstrap.current()
    deps.quotas.put("pay", {"limit_bytes": 10**9, "period": "day"})
    ranges = []
    total = deps.store.range_total
    deps.store.range_total = lambda *a: ranges.append(a) or total(*a)
    col.run(now=T0 + 1200 + 31)  # idle since; the item now counts today, summed once from storage
    item = deps.store.get_service("pay")
    assert (item.period_kind, item.period_start, item.total) == ("day", T0 - T0 % 86400, 15 * 1000)
    col.run(now=T0 + 1800 + 31)
    assert len(ranges) == 1


def test_outage_longer_than_max_backfill_is_recorded_as_a_gap(collector, config):
    col, prom = collector
    config.set(MAX_BACKFILL_MINUTES=30)
    col = config.start(prometheus=prom).collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 7200, T0 + 3600, 60, iter(lambda: 5, None)))
    report = col.run(now=T0 + 3600 + 31)
    assert report.gaps == [[T0, T0 + 1800]]
    state = bootstrap.current().store.state()
    assert [list(map(int, g)) for g in state.gaps] == [[T0, T0 + 1800]]
    assert min(stored_minutes("pay")) == T0 + 1800


def test_a_second_run_while_one_holds_the_lease_does_nothing(collector):
    col, prom = collector
    store = bootstrap.current().store
    assert store.acquire_lease("other-run", T0, 900)
    assert col.run(now=T0 + 60).status == "skipped"


def test_range_total_reads_rollups_and_minutes(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "ingress"), scrape(T0 - 300, T0 + 3600, 30, iter(lambda: 2, None)))
    col.run(now=T0 + 3600 + 31)
    total = bootstrap.current().store.range_total("pay", T0 + 180, T0 + 3600)
    assert total.ingress == 2 * 2 * (60 - 3)
    assert [lvl for *_, lvl in decompose(T0 + 180, T0 + 3600)] == ["1m", "5m", "15m"]


def kong2(service, route, kind, instance="node-old:8001"):
    return {"__name__": "kong_bandwidth", "service": service, "route": route, "type": kind,
            "instance": instance, "job": "kong"}


def test_a_fleet_mid_upgrade_is_counted_whole_and_its_schemas_reported(collector):
    col, prom = collector
    prom.add(kong2("pay", "r", "egress"), scrape(T0 - 300, T0 + 3600, 30, iter(lambda: 40, None)))
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 3600, 30, iter(lambda: 2, None)))
    col.run(now=T0 + 3600 + 31)
    assert sum(e for _, e in stored_minutes("pay").values()) == 120 * 42
    assert bootstrap.current().store.state().schema_seen == "2,3.7"


def test_kong_schema_setting_restricts_the_metric_read(collector, config):
    col, prom = collector
    config.set(KONG_SCHEMA=2)
    col = config.start(prometheus=prom).collector
    prom.add(kong2("pay", "r", "ingress"), scrape(T0 - 300, T0 + 600, 60, iter(lambda: 5, None)))
    prom.add(kong3("pay", "r", "ingress"), scrape(T0 - 300, T0 + 600, 60, iter(lambda: 1000, None)))
    col.run(now=T0 + 600 + 31)
    assert sum(i for i, _ in stored_minutes("pay").values()) == 15 * 5  # born in the window: all 15 samples


def test_ha_replicas_are_counted_once(collector, config):
    col, prom = collector
    config.set(PROMETHEUS_REPLICA_LABELS="prometheus_replica")
    col = config.start(prometheus=prom).collector
    for replica in ("a", "b"):
        prom.add({**kong3("pay", "r", "egress"), "prometheus_replica": replica},
                 scrape(T0 - 300, T0 + 600, 60, iter(lambda: 9, None)))
    col.run(now=T0 + 600 + 31)
    assert sum(e for _, e in stored_minutes("pay").values()) == 15 * 9  # not 2 x 15 x 9


def test_a_series_without_direction_is_quarantined(collector):
    col, prom = collector
    labels = kong3("pay", "r", "egress")
    del labels["direction"]
    prom.add(labels, [(T0 - 30, 1), (T0 + 30, 2)])
    assert col.run(now=T0 + 120 + 31).status == "ok"
    assert stored_minutes("pay") == {}
    assert "direction" in bootstrap.current().store.state().quarantined[0]["reason"]


def test_a_run_landing_exactly_on_a_minute_boundary_counts_a_boundary_sample_once(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), [(T0 - 90, 0), (T0 - 30, 100), (T0, 250), (T0 + 30, 300)])
    col.run(now=T0 + 30)  # lag 30 s: minutes before T0 are final; the sample at exactly T0 is not theirs
    assert stored_minutes("pay") == {T0 - 60: (0, 100)}
    col.run(now=T0 + 60 + 30)
    assert stored_minutes("pay") == {T0 - 60: (0, 100), T0: (0, 200)}


def test_an_unexpected_exception_releases_the_lease_and_the_next_run_is_not_skipped(collector):
    """A bug (not a BandwidthMeterError) mid-run: recorded, the lease released, raised as it is."""
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 600, 15, iter(lambda: 10, None)))
    col.run(now=T0 + 300 + 31)
    watermark = bootstrap.current().store.state().watermark
    healthy = prom.raw_samples

    def broken(selector, start, end):
        raise KeyError("instance")

    prom.raw_samples = broken
    with pytest.raises(KeyError):
        col.run(now=T0 + 600 + 31)
    state = bootstrap.current().store.state()
    assert state.running_since is None and state.watermark == watermark
    assert state.last_error == "unexpected KeyError: 'instance'" and state.last_error_at == T0 + 600 + 31
    prom.raw_samples = healthy
    report = col.run(now=T0 + 600 + 60)  # within LEASE_SECONDS of the failed run
    assert report.status == "ok" and report.minutes == 5
    assert bootstrap.current().store.state().last_error is None
    assert sum(e for _, e in stored_minutes("pay").values()) == 60 * 10


def test_a_store_failing_mid_run_with_an_unexpected_exception_releases_the_lease(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 600, 15, iter(lambda: 10, None)))
    store = bootstrap.current().store

    def broken(level, buckets):
        raise TypeError("an item the model cannot serialize")

    store.put_buckets = broken
    with pytest.raises(TypeError):
        col.run(now=T0 + 300 + 31)
    del store.put_buckets  # the class's own again
    assert store.state().running_since is None
    assert col.run(now=T0 + 300 + 45).status == "ok"
