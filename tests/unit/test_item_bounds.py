"""What one stored item may hold: a service's routes (and their labels) are unbounded, a DynamoDB
item is not (400 KB, which moto enforces too). Buckets keep the busiest routes by name and sum the
rest into OTHER_ROUTES, totals exact; an item that still cannot be stored is quarantined alone."""
import pytest

from chalicelib import bootstrap
from chalicelib.core.models import SERVICES_PK, ServiceUsage, UsageBucket
from chalicelib.core.store import bucket_usage
from chalicelib.core.usage import (MAX_CONSUMERS, MAX_LABEL_BYTES, MAX_ROUTES, MAX_STATUS_CODES, OTHER_CODES,
                                   OTHER_CONSUMERS, OTHER_ROUTES, BucketUsage, stored_label)
from tests.fakes.prometheus import FakePrometheus
from tests.unit.test_collector import T0, kong3, scrape

MINUTE = T0 + 600


def many_routes(count, label_length=20, service="big"):
    bucket = BucketUsage(service, MINUTE)
    for i in range(count):
        name = f"r{i:05d}".ljust(label_length, "x")
        bucket.add(name, "egress", 1000 + i)
        bucket.add(name, "ingress", 7)
    return bucket


def test_a_bucket_keeps_the_busiest_routes_by_name_and_sums_the_rest_into_other_routes():
    bucket = many_routes(MAX_ROUTES + 100)
    bounded = bucket.bounded()
    assert len(bounded.routes) == MAX_ROUTES
    assert (bounded.ingress, bounded.egress) == (bucket.ingress, bucket.egress)
    busiest = sorted(bucket.routes, key=lambda r: -bucket.routes[r]["egress"])[:MAX_ROUTES - 1]
    assert set(bounded.routes) == set(busiest) | {OTHER_ROUTES}
    assert bounded.routes[OTHER_ROUTES] == {"ingress": 7 * 101, "egress": sum(1000 + i for i in range(101))}


def test_a_bucket_within_the_bound_is_stored_as_it_is():
    bucket = many_routes(MAX_ROUTES)
    assert bucket.bounded().routes == bucket.routes


def test_bounding_the_sum_of_bounded_buckets_keeps_every_byte():
    one, two = many_routes(MAX_ROUTES + 50).bounded(), many_routes(MAX_ROUTES + 80).bounded()
    one.merge(two)
    again = one.bounded()
    assert len(again.routes) == MAX_ROUTES and again.total == one.total


def test_long_route_labels_are_shortened_the_same_way_everywhere_and_stay_apart():
    a, b = "a" * 1000 + "-one", "a" * 1000 + "-two"
    assert stored_label(a) == stored_label(a) != stored_label(b)
    assert len(stored_label(a).encode()) <= MAX_LABEL_BYTES
    assert stored_label(a).startswith("a" * 200)
    wide = "\u00e9" * 300  # two bytes each: the cut never splits a character
    assert len(stored_label(wide).encode()) <= MAX_LABEL_BYTES and stored_label(wide).startswith("\u00e9" * 100)
    bucket = BucketUsage("s", MINUTE)
    bucket.add(a, "egress", 5)
    bucket.add(b, "egress", 6)
    assert bucket.bounded().routes == {stored_label(a): {"ingress": 0, "egress": 5},
                                       stored_label(b): {"ingress": 0, "egress": 6}}


def test_status_codes_are_bounded_too():
    bucket = BucketUsage("s", MINUTE)
    for code in range(MAX_STATUS_CODES + 20):
        bucket.add_status(f"x{code}", 2)
    codes = bucket.bounded().stats["codes"]
    assert len(codes) == MAX_STATUS_CODES and sum(codes.values()) == 2 * (MAX_STATUS_CODES + 20)
    assert codes[OTHER_CODES] == 2 * 21


def test_the_worst_bucket_fits_one_dynamodb_item(aws):
    # Thousands of routes and of consumers with labels far longer than any bound, every status
    # code and a full latency histogram: several MB unbounded.
    bucket = many_routes(5000, label_length=2000)
    for i in range(5000):
        bucket.add("r00000".ljust(2000, "x"), "ingress", 10**12 + i, f"c{i:05d}".ljust(2000, "\u00e9"))
    for code in range(500):
        bucket.add_status(str(code), 1)
    for le in range(40):
        bucket.add_latency("buckets", 10**15, str(2 ** le))
    bucket.add_latency("sum", 10**15 + 0.5)
    bucket.add_latency("count", 10**15)
    store = bootstrap.current().store
    assert store.put_buckets("1m", [bucket]) == 1
    item = UsageBucket.get("USAGE#big", "1m#" + __import__("chalicelib.core.timeutil", fromlist=["iso_minute"])
                           .iso_minute(MINUTE))
    assert len(item.routes.as_dict()) == MAX_ROUTES and len(bucket_usage(item).consumers) == MAX_CONSUMERS
    assert (int(item.ingress), int(item.egress)) == (bucket.ingress, bucket.egress)
    stored = store.query_buckets("big", "1m", MINUTE, MINUTE + 60)[0]
    assert stored.total == bucket.total and OTHER_ROUTES in stored.routes
    assert OTHER_CONSUMERS in stored.consumers
    assert sum(e["ingress"] + e["egress"] for e in stored.consumers.values()) == bucket.total
    assert store.oversized == []


def test_an_item_that_cannot_be_stored_is_quarantined_and_its_batch_siblings_are_written(aws):
    store = bootstrap.current().store
    items = [ServiceUsage.first_seen_at(f"svc-{i:02d}", MINUTE, MINUTE) for i in range(30)]
    items[3].period_kind = "x" * 420_000  # over 400 KB whatever is done (a checkpoint would go to pages)
    assert store.put_services(items) == 29
    stored = {item.service for item in ServiceUsage.query(SERVICES_PK)}
    assert stored == {f"svc-{i:02d}" for i in range(30)} - {"svc-03"}
    assert len(store.oversized) == 1
    entry = store.oversized[0]
    assert entry["key"] == [SERVICES_PK, "svc-03"] and entry["item"] == "service usage items"
    assert "size" in entry["reason"].lower()
    assert store.take_oversized() == [entry] and store.oversized == []


def test_a_failure_that_is_not_the_items_fault_still_fails_the_write(aws):
    from chalicelib.core.errors import StoreError
    store = bootstrap.current().store
    UsageBucket.Meta.table_name = "no-such-table"
    try:
        with pytest.raises(StoreError):
            store.put_buckets("1m", [many_routes(3)])
    finally:
        UsageBucket.Meta.table_name = bootstrap.current().settings.table_name
        UsageBucket._connection = None
    assert store.oversized == []


@pytest.fixture
def collector(aws, config):
    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=10)
    fake = FakePrometheus()
    return config.start(prometheus=fake).collector, fake


def test_a_service_with_thousands_of_long_routes_is_collected_exactly_and_the_run_moves_on(collector):
    col, prom = collector
    routes = 1500
    for i in range(routes):
        prom.add(kong3("wide", f"route-{i:04d}-" + "z" * 400, "egress"),
                 scrape(T0 - 600, T0 + 600, 60, iter(lambda: 10, None)))
    prom.add(kong3("small", "only", "egress"), scrape(T0 - 600, T0 + 600, 60, iter(lambda: 3, None)))
    report = col.run(now=T0 + 600 + 31)
    assert report.status == "ok"
    store = bootstrap.current().store
    assert store.state().watermark == T0 + 600
    total = store.range_total("wide", T0, T0 + 600)
    assert total.egress == routes * 10 * 10  # ten minutes of +10 per route
    assert store.range_total("small", T0, T0 + 600).egress == 30
    assert all(len(b.routes) <= MAX_ROUTES for b in store.query_buckets("wide", "1m", T0, T0 + 600))
    assert store.get_service("wide").total == routes * 10 * 10


def test_an_item_the_store_left_out_is_in_the_runs_quarantine_and_the_run_moves_on(collector):
    col, prom = collector
    prom.add(kong3("small", "only", "egress"), scrape(T0 - 600, T0 + 600, 60, iter(lambda: 3, None)))
    store = bootstrap.current().store
    write = store.put_services

    def refuse_one(items):  # as DynamoDB refuses an item over 400 KB: left out, the rest written
        store.oversized.append({"item": "service items", "key": ["SERVICES", "huge"], "reason": "Item size too big"})
        return write(items)

    store.put_services = refuse_one
    report = col.run(now=T0 + 600 + 31)
    assert report.status == "ok" and store.state().watermark == T0 + 600
    assert {"series": "service items SERVICES huge", "reason": "cannot be stored: Item size too big"} \
        in report.quarantined
    assert store.take_oversized() == []  # reported once


def test_the_chart_shows_other_routes_as_a_series_and_finds_a_long_route_by_its_full_label(aws, config):
    import json
    from urllib.parse import quote

    from chalice.test import Client

    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=10)
    prom = FakePrometheus()
    long_route = "checkout-" + "q" * 600
    prom.add(kong3("wide", long_route, "egress"), [(T0 - 60 + 60 * i, 5000 * i) for i in range(12)])
    for i in range(MAX_ROUTES + 10):
        prom.add(kong3("wide", f"r{i:04d}", "egress"), [(T0 - 60 + 60 * m, (i + 1) * m) for m in range(12)])
    config.start(prometheus=prom).collector.run(now=T0 + 600)
    config.start(prometheus=prom, clock=lambda: T0 + 630)
    from app import app

    with Client(app) as client:
        base = f"/v1/services/wide/bandwidth?start={T0}&end={T0 + 600}&step=1m&direction=egress"
        split = json.loads(client.http.get(base + "&split=route").body)
        whole = json.loads(client.http.get(base).body)
        one = json.loads(client.http.get(base + "&route=" + quote(long_route)).body)
    totals = {s["route"]: s["total_bytes"] for s in split["series"]}
    assert len(totals) == MAX_ROUTES and OTHER_ROUTES in totals
    # 511 routes: the twelve quietest (1..12 B/min) are in "(other routes)"; nothing is lost
    assert totals[OTHER_ROUTES] == sum(range(1, 13)) * 10
    assert sum(totals.values()) == whole["series"][0]["total_bytes"]
    assert one["series"][0]["total_bytes"] == 50_000


def test_parallel_batches_quarantine_the_offender_alone_too(aws):
    from chalicelib.core.store import UsageStore
    store = UsageStore(write_workers=4)
    items = [ServiceUsage.first_seen_at(f"svc-{i:02d}", MINUTE, MINUTE) for i in range(80)]
    items[60].period_kind = "x" * 420_000
    assert store.put_services(items) == 79 and store.writes == 79
    assert [entry["key"][1] for entry in store.take_oversized()] == ["svc-60"]
    assert len(list(ServiceUsage.query(SERVICES_PK))) == 79


def test_bytes_without_a_route_are_stored_under_no_route_not_lost(aws):
    """Kong says route="" for a service matched by no named route; DynamoDB keeps no empty map
    key, so those bytes once vanished from the stored routes and from the totals read back."""
    from chalicelib.core.usage import NO_ROUTE
    store = bootstrap.current().store
    bucket = BucketUsage("svc", MINUTE)
    bucket.add("", "egress", 100)
    bucket.add("named", "ingress", 5)
    store.put_buckets("1m", [bucket])
    (stored,) = store.query_buckets("svc", "1m", MINUTE, MINUTE + 60)
    assert stored.routes == {NO_ROUTE: {"ingress": 0, "egress": 100}, "named": {"ingress": 5, "egress": 0}}
    assert stored.total == 105
