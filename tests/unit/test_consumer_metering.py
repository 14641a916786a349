"""Each consumer's usage in its quota period (ConsumerUsage, collect/consumers.py): exact through
a gateway restart, a retried window, a period boundary and sharding, written every other minute.

The truth is always the consumer's bytes in the stored minute buckets, summed over services."""
import json

import pytest

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMER, CONSUMERS_PK, CollectorState, ConsumerUsage, UsageBucket
from chalicelib.core.store import bucket_usage
from chalicelib.core.usage import ANONYMOUS_CONSUMER
from tests.fakes.prometheus import FakePrometheus
from tests.unit.test_api import client  # noqa: F401 (the fixture: the app on moto in-process)
from tests.unit.test_collector import DAY0, T0, scrape

CONSUMERS = ("alice", "bob", "carol")


def kong37(service, consumer, instance, direction="egress", route="r"):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": route, "direction": direction,
            "workspace": "default", "consumer": consumer, "instance": instance, "job": "kong"}


def traffic(prom, start, end, restart=None):
    """alice on two services and two nodes (node a restarts at ``restart``), bob on pay only
    from the middle on, carol every other minute, and anonymous traffic."""
    for service, consumer, node, step in [("pay", "alice", "a:8001", 100), ("pay", "alice", "b:8001", 3),
                                          ("search", "alice", "a:8001", 40), ("pay", "", "a:8001", 9)]:
        if node == "a:8001" and restart:
            samples = scrape(start, restart, 15, iter(lambda: step, None))
            samples += scrape(restart, end, 15, iter(lambda: step + 1, None))
        else:
            samples = [(t, 10**12 + v) for t, v in scrape(start, end, 15, iter(lambda: step, None))]
        prom.add(kong37(service, consumer, node), samples)
    middle = start + (end - start) // 2 // 60 * 60
    prom.add(kong37("pay", "bob", "a:8001", "ingress"), scrape(middle, end, 15, iter(lambda: 7, None)))
    carol, total = [], 0
    for t in range(start, end, 15):
        total += 5 if (t // 60) % 2 == 0 else 0
        carol.append((t, total))
    prom.add(kong37("search", "carol", "b:8001"), carol)


@pytest.fixture
def metered(aws, config):
    """Consumers written as `make run` does: every other minute (CONSUMER_WRITE_MINUTES=2)."""
    return metering(config)


@pytest.fixture
def metered_every_ten(aws, config):
    """Consumers without a quota written every ten minutes, as in AWS."""
    return metering(config, CONSUMER_WRITE_MINUTES=10)


def metering(config, **settings):
    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=5, COLLECT_TRAFFIC_STATS="false", **settings)
    prom = FakePrometheus()
    deps = config.start(prometheus=prom)
    writes = []
    original = deps.store.put_consumers
    deps.store.put_consumers = lambda items: writes.extend(ConsumerUsage.from_raw_data(i.serialize()) for i in items) \
        or original(items)
    return deps, prom, writes


def minute_truth(start, end):
    """{consumer: [ingress, egress]} from the stored minute buckets in [start, end)."""
    truth = {}
    for item in UsageBucket.scan(UsageBucket.pk.startswith("USAGE#")):
        consumers = bucket_usage(item).consumers
        if item.level != "1m" or not start <= int(item.start) < end or consumers is None:
            continue
        for consumer, entry in consumers.items():
            got = truth.setdefault(consumer, [0, 0])
            got[0] += int(entry["ingress"])
            got[1] += int(entry["egress"])
    return truth


def stored():
    return {i.sk: i for i in ConsumerUsage.query(CONSUMERS_PK)}


def run_minutes(deps, first_end, last_end):
    """One run a minute: the collector's ordinary one-minute chunks ending at first_end..last_end."""
    for end in range(first_end, last_end + 60, 60):
        assert deps.collector.run(now=end + 31).status == "ok"


def test_each_consumer_period_total_is_its_minute_bytes_through_a_restart_and_writes_every_other_minute(metered):
    deps, prom, writes = metered
    traffic(prom, T0 - 600, T0 + 1800, restart=T0 + 900)
    assert deps.collector.run(now=T0 + 600 + 31).status == "ok"  # a 5-minute chunk: it flushes
    del writes[:]
    run_minutes(deps, T0 + 660, T0 + 1440)  # 14 one-minute chunks, the last ending on an even minute
    truth = minute_truth(0, T0 + 1440)
    items = stored()
    assert set(items) == set(CONSUMERS) and ANONYMOUS_CONSUMER in truth  # anonymous is no consumer
    for consumer in CONSUMERS:
        item = items[consumer]
        assert [int(item.ingress), int(item.egress)] == truth[consumer], consumer
        assert int(item.total) == sum(truth[consumer])
        assert int(item.period_start) == DAY0 - 30 * 86400 and int(item.through) == T0 + 1440
    alice = items["alice"].services.as_dict()
    assert {s: int(e["egress"]) for s, e in alice.items()} == {
        "pay": sum(minute_truth_of("pay", "alice", T0 + 1440)), "search": sum(minute_truth_of("search", "alice", T0 + 1440))}
    assert sum(truth["alice"]) < 10**11  # the restart did not count a lifetime
    # Cost: 14 one-minute chunks with 3 active consumers each wrote each consumer at most every other minute.
    active_minutes = 14 * 3
    assert len(writes) <= active_minutes / 2
    # Between flushes the item lags by at most one minute, then catches up exactly.
    run_minutes(deps, T0 + 1500, T0 + 1500)  # ends on an odd minute: not written
    assert int(stored()["alice"].through) == T0 + 1440
    run_minutes(deps, T0 + 1560, T0 + 1560)  # the next one reads that minute back
    assert int(stored()["alice"].total) == sum(minute_truth(0, T0 + 1560)["alice"])


def quota_crossed_after(deps, consumer, fraction_bytes, kind=CONSUMER):
    """A quota whose 80 % threshold is ``fraction_bytes`` above the consumer's stored usage."""
    usage = int(stored()[consumer].total)
    limit = -(-(usage + fraction_bytes) * 100 // 80)
    deps.quotas.put(consumer, {"limit_bytes": limit}, kind=kind)
    return limit * 80 / 100


def test_a_consumer_is_written_at_the_multiples_and_with_a_quota_also_when_near_a_threshold(metered_every_ten):
    """CONSUMER_WRITE_MINUTES=10 (the default in AWS): carol, without a quota, and bob, far from
    his quota's thresholds, are written at the multiples of ten minutes only; alice, whose 80 %
    comes within reach, at the even minute her bytes may reach it and at every even minute after
    it until the next multiple. At each write the figure is exact."""
    deps, prom, writes = metered_every_ten
    deps.quotas.put("bob", {"limit_bytes": 10**9}, kind=CONSUMER)
    traffic(prom, T0 - 600, T0 + 2400)
    prom.add(kong37("video", "dave", "a:8001"), [(t, 9 * i) for i, t in enumerate(range(T0 - 600, T0 + 2400, 15))])
    assert deps.collector.run(now=T0 + 600 + 31).status == "ok"
    run_minutes(deps, T0 + 660, T0 + 1200)
    # alice adds 572 bytes a minute: 80 % is 2,500 bytes away, reached in the minute ending T0 + 1500.
    threshold = quota_crossed_after(deps, "alice", 2500)
    del writes[:]
    written = {}  # consumer -> the chunk ends at which it was written
    minutes_read = {}  # chunk end -> the services whose minute items it read
    original = deps.store.get_buckets
    for end in range(T0 + 1260, T0 + 2400, 60):
        deps.store.get_buckets = lambda level, keys, end=end: minutes_read.setdefault(end, set()).update(
            service for service, _ in keys if level == "1m") or original(level, keys)
        assert deps.collector.run(now=end + 31).status == "ok"
        for item in writes:
            written.setdefault(item.consumer, []).append(end)
            assert sum(minute_truth(0, end)[item.consumer]) == int(item.total), (item.consumer, end)
        del writes[:]
        if end % 120 == 0 and sum(minute_truth(0, end)["alice"]) >= threshold:
            assert int(stored()["alice"].total) >= threshold, end  # stored at the first even minute past it
    assert sum(minute_truth(0, T0 + 1440)["alice"]) < threshold <= sum(minute_truth(0, T0 + 1500)["alice"])
    assert written["carol"] == written["bob"] == [T0 + 1800]
    assert written["alice"] == [T0 + 1560, T0 + 1680, T0 + 1800]
    # At T0 + 1560 the stretch since the multiple is one 5-minute rollup a service, which judges
    # everyone; to write alice, the minutes are read of her services only (not dave's video).
    assert minutes_read[T0 + 1560] == {"pay", "search"}
    # In between, bob's figure is the one of the last multiple, then exact again at the next.
    assert int(stored()["bob"].through) == T0 + 1800
    run_minutes(deps, T0 + 2400, T0 + 2400)
    assert int(stored()["bob"].total) == sum(minute_truth(0, T0 + 2400)["bob"])


@pytest.mark.parametrize("change", ["quota set", "quota deleted and set again"])
def test_a_consumer_that_gets_a_quota_between_two_writes_catches_up_exactly(metered_every_ten, change):
    """alice was written at T0 + 1200 (a multiple of ten minutes); a quota whose 80 % she is about
    to reach arrives three minutes later: her next write, at the even minute, reads back every
    minute since."""
    deps, prom, writes = metered_every_ten
    traffic(prom, T0 - 600, T0 + 1800)
    if change != "quota set":
        deps.quotas.put("alice", {"limit_bytes": 10**9}, kind=CONSUMER)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1200)
    if change != "quota set":
        deps.quotas.delete("alice", kind=CONSUMER)
    run_minutes(deps, T0 + 1260, T0 + 1380)  # 1320 is even: alice, without a quota now, waits
    assert int(stored()["alice"].through) == T0 + 1200
    quota_crossed_after(deps, "alice", 1000)  # four minutes: 2,288 bytes
    del writes[:]
    run_minutes(deps, T0 + 1440, T0 + 1440)
    assert [w.consumer for w in writes if w.consumer == "alice"] == ["alice"]
    assert int(stored()["alice"].total) == sum(minute_truth(0, T0 + 1440)["alice"])
    run_minutes(deps, T0 + 1500, T0 + 1800)
    assert int(stored()["alice"].total) == sum(minute_truth(0, T0 + 1800)["alice"])


@pytest.mark.parametrize("limit, first_write", [(200, T0 + 1440), (10**9, T0 + 1800)])
def test_a_new_consumer_given_a_quota_before_its_first_write_is_counted_from_its_first_minute(
        metered_every_ten, limit, first_write):
    """dave appears after a multiple of ten minutes without a quota (not written at the even
    minutes), then gets one: his first write, at the even minute his bytes (~200 by T0 + 1440)
    reach 80 % of it, or else at the next multiple, reads back every minute since the multiple."""
    deps, prom, _ = metered_every_ten
    traffic(prom, T0 - 600, T0 + 1800)
    prom.add(kong37("pay", "dave", "a:8001"), [(t, 13 * i) for i, t in enumerate(range(T0 + 1215, T0 + 1800, 15))])
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1380)
    assert "dave" not in stored() and sum(minute_truth(0, T0 + 1380)["dave"]) > 0
    deps.quotas.put("dave", {"limit_bytes": limit}, kind=CONSUMER)
    run_minutes(deps, T0 + 1440, first_write - 60)
    assert "dave" not in stored()
    run_minutes(deps, first_write, first_write)
    assert int(stored()["dave"].total) == sum(minute_truth(0, first_write)["dave"])


def test_the_minutes_a_rollup_read_are_not_read_again_for_the_consumers(metered_every_ten):
    """At a multiple of ten minutes the 5-minute rollup reads four minute items a service, which
    the consumers' read-back needs too: each is read once."""
    deps, prom, _ = metered_every_ten
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1140)
    asked = []
    original = deps.store.get_buckets
    deps.store.get_buckets = lambda level, keys: asked.extend((level, *k) for k in keys) or original(level, keys)
    run_minutes(deps, T0 + 1200, T0 + 1200)
    minutes = [key for key in asked if key[0] == "1m"]
    assert len(minutes) == len(set(minutes))
    assert {t for _, _, t in minutes} == set(range(T0 + 600, T0 + 1140, 60))  # nine minutes back, each once
    assert int(stored()["alice"].total) == sum(minute_truth(0, T0 + 1200)["alice"])


def test_between_multiples_consumers_far_from_their_thresholds_cost_reads_and_no_writes(metered_every_ten):
    """Every consumer under a quota far from its thresholds: at the even minutes between two
    multiples their items are read (to judge them) and none is written."""
    deps, prom, writes = metered_every_ten
    for consumer in CONSUMERS:
        deps.quotas.put(consumer, {"limit_bytes": 10**12}, kind=CONSUMER)
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1200)
    del writes[:]
    run_minutes(deps, T0 + 1260, T0 + 1740)
    assert writes == []
    run_minutes(deps, T0 + 1800, T0 + 1800)
    assert sorted(w.consumer for w in writes) == sorted(CONSUMERS)
    for consumer in CONSUMERS:
        assert int(stored()[consumer].total) == sum(minute_truth(0, T0 + 1800)[consumer])


def test_lowering_the_write_interval_loses_nothing_the_longer_one_left_unwritten(metered_every_ten, config):
    """alice (no quota) was last written at T0 + 1200 under CONSUMER_WRITE_MINUTES=10; the setting
    drops to 2 at T0 + 1380: the next write reads back from where the state says every consumer
    was last written, not from the last multiple of the new value."""
    deps, prom, _ = metered_every_ten
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1380)
    assert int(stored()["alice"].through) == T0 + 1200
    assert int(CollectorState.get("STATE", "collector").consumers_through) == T0 + 1200
    deps = config.set(CONSUMER_WRITE_MINUTES=2).start(prometheus=prom)
    run_minutes(deps, T0 + 1440, T0 + 1440)
    assert int(stored()["alice"].through) == T0 + 1440
    assert int(stored()["alice"].total) == sum(minute_truth(0, T0 + 1440)["alice"])


def minute_truth_of(service, consumer, end):
    got = [0, 0]
    for item in UsageBucket.query(f"USAGE#{service}"):
        consumers = bucket_usage(item).consumers
        if item.level == "1m" and int(item.start) < end and consumers:
            entry = consumers.get(consumer, {})
            got[0] += int(entry.get("ingress", 0))
            got[1] += int(entry.get("egress", 0))
    return got


def test_one_consumers_page_adds_the_minutes_since_its_last_write_and_the_listing_shows_the_stored_figure(
        metered_every_ten, config, client):
    """Between two multiples alice's item holds her figure as of the last one; her own page adds
    the stored minutes since, so it agrees with her chart, while the listing shows the item."""
    deps, prom, _ = metered_every_ten
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1380)
    assert int(stored()["alice"].through) == T0 + 1200
    config.start(prometheus=prom, clock=lambda: T0 + 1380 + 45)
    response = client.http.get("/v1/consumers/alice")
    body = json.loads(response.body)
    truth = minute_truth(0, T0 + 1380)["alice"]
    assert response.status_code == 200
    assert (body["usage"]["ingress"], body["usage"]["egress"]) == tuple(truth)
    assert {s: e["egress"] for s, e in body["services"].items()} == {
        s: minute_truth_of(s, "alice", T0 + 1380)[1] for s in ("pay", "search")}
    listing = json.loads(client.http.get("/v1/consumers?sort=name").body)
    row = next(c for c in listing["consumers"] if c["consumer"] == "alice")
    assert row["usage"]["total"] == int(stored()["alice"].total) < sum(truth)


def test_just_after_a_period_ends_a_consumers_page_counts_the_new_periods_minutes(metered_every_ten):
    """The multiple at midnight wrote alice's November figure; three minutes into December her
    items still hold November, and her page counts December's stored minutes alone."""
    from chalicelib.api.consumers import consumer_summary

    deps, prom, _ = metered_every_ten
    traffic(prom, DAY0 - 900, DAY0 + 900)
    deps.collector.run(now=DAY0 - 420 + 31)
    run_minutes(deps, DAY0 - 360, DAY0 + 180)
    assert int(stored()["alice"].period_start) < DAY0
    summary = consumer_summary(deps.store, "alice", deps.store.get_consumer("alice", 1),
                               deps.quotas.load().quota_for_consumer("alice"), DAY0 + 180 + 45, up_to_date=True)
    december = minute_truth(DAY0, DAY0 + 180)["alice"]
    assert (summary["usage"]["ingress"], summary["usage"]["egress"]) == tuple(december) and sum(december) > 0


def test_a_retried_window_writes_the_same_consumer_values(metered):
    deps, prom, _ = metered
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1200)
    before = {sk: item.serialize() for sk, item in stored().items()}
    # The watermark put back three minutes (a run that wrote and then failed to record it).
    CollectorState("STATE", "collector").update(actions=[CollectorState.watermark.set(T0 + 1020)])
    run_minutes(deps, T0 + 1080, T0 + 1200)
    assert {sk: item.serialize() for sk, item in stored().items()} == before
    # and a longer retried chunk over the same minutes as well
    CollectorState("STATE", "collector").update(actions=[CollectorState.watermark.set(T0 + 900)])
    deps.collector.run(now=T0 + 1200 + 31)
    assert {sk: item.serialize() for sk, item in stored().items()} == before


@pytest.mark.parametrize("chunked", [False, True])
def test_a_period_boundary_stores_the_old_periods_final_figure_then_counts_the_new_one(metered, chunked):
    deps, prom, writes = metered
    traffic(prom, DAY0 - 900, DAY0 + 900)
    deps.collector.run(now=DAY0 - 420 + 31)  # collection starts at DAY0 - 12 min
    if chunked:  # one run of several minutes across the boundary
        deps.collector.run(now=DAY0 + 240 + 31)
    else:
        run_minutes(deps, DAY0 - 360, DAY0 + 240)
    november, december = minute_truth(0, DAY0), minute_truth(DAY0, DAY0 + 240)
    alice = stored()["alice"]
    assert int(alice.period_start) == DAY0 and int(alice.total) == sum(december["alice"])
    finals = [w for w in writes if w.consumer == "alice" and int(w.period_start) == DAY0 - 30 * 86400]
    assert int(finals[-1].total) == sum(november["alice"])  # the last November figure written is exact
    # The new period still knows which services the consumer used before (its chart looks there).
    assert set(alice.services.as_dict()) == {"pay", "search"}


def test_a_minute_with_more_consumers_than_a_bucket_keeps_is_written_at_once_and_exact(metered, monkeypatch):
    from chalicelib.core import usage

    monkeypatch.setattr(usage, "MAX_CONSUMERS", 2)
    from chalicelib.collect import consumers

    monkeypatch.setattr(consumers, "MAX_CONSUMERS", 2)
    deps, prom, _ = metered
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    run_minutes(deps, T0 + 660, T0 + 1260)  # the stored buckets sum the smallest consumers together
    items = stored()
    assert int(items["carol"].total) == sum(minute_truth_of("search", "carol", T0 + 1260))
    assert int(items["bob"].through) >= T0 + 1260 - 60


def shard_traffic(prom):
    services = ["pay", "search", "cdn", "a+b", "late"]
    for n, service in enumerate(services):
        for consumer in CONSUMERS:
            born = T0 + 1560 if service == "late" else T0 - 900  # handed over on an odd minute
            step = 10 + n * 7 + len(consumer)
            lifetime = 0 if service == "late" else 10**9  # a series born later counts from zero
            prom.add(kong37(service, consumer, "a:8001"),
                     [(t, lifetime + step * i) for i, t in enumerate(range(born, T0 + 3600, 15))])


def consumer_totals(store, shard_count):
    totals = {}
    for consumer in CONSUMERS:
        items = store.get_consumer(consumer, shard_count)
        totals[consumer] = (sum(int(i.ingress) for i in items), sum(int(i.egress) for i in items))
    return totals


@pytest.mark.parametrize("batch,write_minutes", [(1000, 2), (2, 2), (1000, 10)])
def test_shards_each_keep_their_share_and_the_sum_is_what_one_collector_counts(aws, config, monkeypatch, batch,
                                                                               write_minutes):
    from chalicelib.collect import plan
    from tests.unit.test_collector_shards import collect, every

    # 2: the catch-all counts the same window again for the next two services, into the same
    # consumer items: each service's guard keeps the passes apart.
    monkeypatch.setattr(plan, "CATCH_ALL_BATCH", batch)

    # 10: the fixed shards read back up to nine minutes, never one before they took a service over.
    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=10, COLLECT_TRAFFIC_STATS="false",
               CONSUMER_WRITE_MINUTES=write_minutes)
    prom = FakePrometheus()
    shard_traffic(prom)
    # Ten-minute chunks, then one a minute across the late service's hand-over.
    # The last ends on a multiple of ten minutes: every consumer's item is written then.
    instants = every(10, T0 + 600 + 31, T0 + 1200 + 31) + every(1, T0 + 1260 + 31, T0 + 1800 + 31)
    collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    store = bootstrap.current().store
    truth = {c: tuple(minute_truth(0, T0 + 1800)[c]) for c in CONSUMERS}
    assert consumer_totals(store, 1) == truth
    collect(config, prom, 4, [(t, [0, 3, 1, 2]) for t in instants], "sharded")
    store = bootstrap.current().store
    assert consumer_totals(store, 4) == truth
    shard_items = [i.sk for i in ConsumerUsage.query(CONSUMERS_PK)]
    assert any("\x1f" in sk for sk in shard_items)  # the fixed shards kept items of their own
    assert {i.consumer for i in ConsumerUsage.query(CONSUMERS_PK)} == set(CONSUMERS)


def test_with_shards_a_threshold_crossing_is_stored_by_the_next_even_minute_and_the_sum_stays_exact(aws, config):
    """alice's bytes come from five services on four shards, each judging only its own share: once
    her bytes reach 80 % of her quota, her stored sum does by the next even minute, and at the
    multiple every shard's item of her is exact."""
    from chalicelib.api.consumers import consumer_summary
    from chalicelib.core import tables

    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=10, COLLECT_TRAFFIC_STATS="false",
               CONSUMER_WRITE_MINUTES=10, SHARD_COUNT=4)
    prom = FakePrometheus()
    shard_traffic(prom)
    deps = config.start(prometheus=prom)
    tables.ensure_table()

    def run_all(now):
        for shard in (0, 3, 1, 2):
            assert deps.collector_for(shard).run(now=now).status in ("ok", "idle")

    run_all(T0 + 600 + 31)
    for end in range(T0 + 660, T0 + 1260, 60):
        run_all(end + 31)
    usage = sum(consumer_totals(deps.store, 4)["alice"])
    assert usage == sum(minute_truth(0, T0 + 1200)["alice"])
    limit = -(-(usage + 1200) * 100 // 80)  # alice adds 408 bytes a minute: 80 % in three minutes
    deps.quotas.put("alice", {"limit_bytes": limit}, kind=CONSUMER)
    threshold = limit * 80 / 100
    crossed = None
    for end in range(T0 + 1260, T0 + 1860, 60):
        run_all(end + 31)
        if end % 120:
            continue
        if crossed is not None:
            assert sum(consumer_totals(deps.store, 4)["alice"]) >= threshold, end
        if crossed is None and sum(minute_truth(0, end)["alice"]) >= threshold:
            crossed = end
    assert crossed is not None and crossed < T0 + 1800
    truth = minute_truth(0, T0 + 1800)
    assert consumer_totals(deps.store, 4) == {c: tuple(truth[c]) for c in CONSUMERS}
    # Between two multiples a consumer's page adds, per service, the minutes after the latest of
    # its shards' guards: exact, the late service's hand-over included.
    for end in range(T0 + 1860, T0 + 2040, 60):
        run_all(end + 31)
    truth = minute_truth(0, T0 + 1980)
    for consumer in CONSUMERS:
        summary = consumer_summary(deps.store, consumer, deps.store.get_consumer(consumer, 4),
                                   deps.quotas.load().quota_for_consumer(consumer), T0 + 1980 + 45, up_to_date=True)
        assert (summary["usage"]["ingress"], summary["usage"]["egress"]) == tuple(truth[consumer]), consumer


@pytest.mark.parametrize("written_by, expected", [(1, ["alice"]), (None, []), (0, [])])
def test_a_consumer_another_shard_wrote_since_the_multiple_is_written_by_every_shard_at_its_next_even_minute(
        aws, written_by, expected):
    """Shard 1 wrote alice after the last multiple (it found her near a threshold): shard 2 writes
    its share of her at its next even minute, however far its own share is from the threshold, so
    a crossing split over shards is stored one flush later at most. Not so when nobody did, or
    when only the catch-all (shard 0 of several, which writes every chunk) did."""
    from chalicelib.collect.consumers import WITH_QUOTA, ConsumerPeriods
    from chalicelib.core.periods import period_at

    deps = bootstrap.current()
    deps.quotas.put("alice", {"limit_bytes": 10**9}, kind=CONSUMER)
    since, start = T0 + 600, T0 + 900
    period = period_at("month", start, 1)
    for shard, egress in ((0, 100), (1, 500), (2, 50)):
        item = ConsumerUsage.first_seen_at("alice", since - 600, last_active=since - 60)
        item.sk = deps.store.consumer_sk("alice", shard)
        item.period_kind, item.period_anchor, item.period_start, item.period_end = "month", 1, period.start, period.end
        item.egress, item.total = egress, egress
        item.through = since + 240 if shard == written_by else since
        item.services = {f"svc-{shard}": {"ingress": 0, "egress": egress, "through": item.through}}
        item.save()
    written = ConsumerPeriods(deps.store, shard=2, shard_count=4).flush(
        WITH_QUOTA, {"alice": [(start, "svc-2", 0, 7)]}, None, deps.quotas.load(), start, start + 60, since)
    assert written == len(expected)
    assert int(ConsumerUsage.get(CONSUMERS_PK, deps.store.consumer_sk("alice", 2)).egress) == (57 if expected else 50)


def test_the_estimate_reads_the_coarsest_rollups_and_never_counts_a_consumer_short(aws):
    """[T0 + 120, T0 + 1980): minutes at the ragged ends, 5-minute items, a 15-minute item in the
    middle; bytes a rollup keeps only in (other consumers) count for everyone."""
    from chalicelib.collect.consumers import estimator
    from chalicelib.core.models import ServiceUsage
    from chalicelib.core.usage import OTHER_CONSUMERS, BucketUsage

    store = bootstrap.current().store

    def bucket(start, **consumers):
        b = BucketUsage("pay", start)
        for name, nbytes in consumers.items():
            b.add("r", "egress", nbytes, name.replace("_", " "))
        return b

    minutes = [bucket(t, alice=1, bob=2) for t in range(T0, T0 + 2400, 60)]
    store.put_buckets("1m", minutes)
    store.put_buckets("5m", [bucket(t, alice=5, bob=10) for t in range(T0, T0 + 1800, 300)])
    fifteen = bucket(T0 + 900, alice=15)
    fifteen.add("r", "egress", 30, OTHER_CONSUMERS)  # bob is among the many a bounded rollup sums
    store.put_buckets("15m", [fifteen])
    services = {"pay": ServiceUsage.first_seen_at("pay", T0, last_active=T0 + 2340)}
    asked = []
    original = store.get_buckets
    store.get_buckets = lambda level, keys: asked.extend((level, k[1]) for k in keys) or original(level, keys)
    got = estimator(store, services, set())(T0 + 120, T0 + 1980)
    assert (got["alice"].ingress, got["alice"].egress) == (0, 3 + 5 + 5 + 45 + 3)
    assert (got["bob"].ingress, got["bob"].egress) == (0, 6 + 10 + 10 + 30 + 6) and got["bob"].services == {"pay"}
    assert sorted(asked) == sorted([("1m", T0 + 120), ("1m", T0 + 180), ("1m", T0 + 240), ("5m", T0 + 300),
                                    ("5m", T0 + 600), ("15m", T0 + 900), ("1m", T0 + 1800), ("1m", T0 + 1860),
                                    ("1m", T0 + 1920)])
    # Minutes the rollups already read are not read again; an idle or excluded service not at all.
    asked.clear()
    known = {("pay", b.start): b for b in minutes[2:5]}
    estimator(store, services, set(), known)(T0 + 120, T0 + 300)
    assert asked == []
    assert estimator(store, services, {"pay"})(T0 + 120, T0 + 1980) == {}


def test_the_collectors_iam_policies_may_write_the_consumer_items_and_the_ranking():
    """Writes are narrowed by partition key in AWS: without these the collector is refused there."""
    from chalicelib.core.models import CONSUMER_RANKING_PK
    from deploy import policies

    for function in ("collect", "collect_shard"):  # a shard worker may run shard 0, which ranks
        assert {CONSUMERS_PK, CONSUMER_RANKING_PK} <= set(policies.WRITES[function])
    assert CONSUMERS_PK not in policies.WRITES["api"]


def test_a_small_fleets_ranking_is_refreshed_at_every_run(metered):
    """A consumer new to a fleet of one ranking page is listed by usage a minute later."""
    deps, prom, _ = metered
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    assert deps.store.ranking_pages("usage", [0])[0] == ["alice", "carol"]  # bob starts later
    run_minutes(deps, T0 + 660, T0 + 900)
    assert int(deps.store.ranking_meta("usage").ranked_at) == T0 + 900 + 31
    assert deps.store.ranking_pages("usage", [0])[0] == ["alice", "bob", "carol"]


def test_the_listings_ranking_is_refreshed_every_ten_minutes_by_shard_0(metered, monkeypatch):
    from chalicelib.collect import consumers

    monkeypatch.setattr(consumers, "RANKED_EVERY_RUN", 1)  # a fleet of more than one ranking page
    deps, prom, _ = metered
    traffic(prom, T0 - 600, T0 + 1800)
    deps.collector.run(now=T0 + 600 + 31)
    first = deps.store.ranking_meta("usage")
    assert int(first.ranked_at) == T0 + 600 + 31 and int(first.count) == 2  # bob starts later
    assert deps.store.ranking_pages("usage", [0])[0] == ["alice", "carol"]  # busiest first
    run_minutes(deps, T0 + 660, T0 + 1140)
    assert int(deps.store.ranking_meta("usage").ranked_at) == T0 + 600 + 31  # not every minute
    run_minutes(deps, T0 + 1200, T0 + 1200)
    assert int(deps.store.ranking_meta("usage").ranked_at) == T0 + 1200 + 31
    assert deps.store.ranking_pages("usage", [0])[0] == ["alice", "bob", "carol"]  # bob now, above carol
    assert deps.store.ranking_pages("percent", [0])[0] == ["alice", "bob", "carol"]  # no quota: by name


def test_a_consumer_on_more_services_than_an_item_keeps_stays_exact_and_storable(aws, monkeypatch):
    """Beyond MAX_CONSUMER_SERVICES the bytes go to OTHER_SERVICES (one guard), totals exact; the
    worst item (every service name at its longest) stays under DynamoDB's 400 KB."""
    from chalicelib.collect.consumers import EVERYONE, ConsumerPeriods
    from chalicelib.core.quotas import QuotaSnapshot
    from chalicelib.core.usage import MAX_CONSUMER_SERVICES, OTHER_SERVICES

    store = bootstrap.current().store
    names = [f"{i:04d}".ljust(200, "s") for i in range(MAX_CONSUMER_SERVICES + 20)]
    minutes = {"alice": [(T0, name, 10**12, 10**12 + i) for i, name in enumerate(names)]}
    assert ConsumerPeriods(store, 0).flush(EVERYONE, minutes, None, QuotaSnapshot(), T0, T0 + 60, 10) == 1
    item = stored()["alice"]
    services = item.services.as_dict()
    assert len(services) == MAX_CONSUMER_SERVICES and OTHER_SERVICES in services
    assert int(item.total) == sum(2 * 10**12 + i for i in range(len(names)))
    assert int(services[OTHER_SERVICES]["egress"]) == sum(10**12 + i for i in range(MAX_CONSUMER_SERVICES - 1, len(names)))
    from bench.collector_bench import item_size  # DynamoDB's sizing rules

    assert 100 * 1024 < item_size(item.serialize()) < 400 * 1024
    # the same minutes again (a retry) change nothing
    ConsumerPeriods(store, 0).flush(EVERYONE, minutes, None, QuotaSnapshot(), T0, T0 + 60, 10)
    assert stored()["alice"].serialize() == item.serialize()
