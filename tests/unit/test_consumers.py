"""Consumers in the collector and the service charts (issue 24, first slice): every series keeps
its consumer, traffic without one is anonymous, and a service's consumers add up to its totals."""
import itertools
import json

import pytest

from chalicelib import bootstrap
from chalicelib.collect.deltas import MinuteAccumulator
from chalicelib.collect.kong import BandwidthKey, bandwidth_key
from chalicelib.core.models import UsageBucket
from chalicelib.core.usage import (ANONYMOUS_CONSUMER, MAX_CONSUMERS, MAX_LABEL_BYTES, OTHER_CONSUMERS, BucketUsage,
                                   stored_label, sum_buckets)
from tests.fakes.prometheus import FakePrometheus
from tests.unit.test_api import client  # noqa: F401 (the fixture: the app on moto in-process)
from tests.unit.test_collector import T0, collector, scrape  # noqa: F401 (collector: the fixture)

BASE3 = {"__name__": "kong_bandwidth_bytes", "service": "pay", "route": "r", "direction": "egress"}


# -- Kong's labels -> key ---------------------------------------------------------------------
@pytest.mark.parametrize("labels, consumer", [
    ({"__name__": "kong_bandwidth", "service": "pay", "route": "r", "type": "egress"}, ""),  # 2.x: no label
    ({**BASE3, "consumer": ""}, ""),  # 3.0-3.6 without per_consumer
    ({**BASE3, "consumer": "alice"}, "alice"),  # 3.0-3.6 with per_consumer
    ({**BASE3, "workspace": "default", "consumer": "bob (ops)"}, "bob (ops)"),  # 3.7+
    ({**BASE3, "workspace": "default", "consumer": ""}, ""),
])
def test_the_key_holds_the_consumer_label_or_empty_in_every_schema(labels, consumer):
    assert bandwidth_key(labels) == BandwidthKey("pay", "r", "egress", consumer)


# -- minute buckets ---------------------------------------------------------------------------
def test_the_accumulator_sums_each_consumer_across_routes_and_nodes_and_anonymous_is_kept():
    acc = MinuteAccumulator()
    acc.add("pay", "r1", "egress", {T0: 10}, "alice")
    acc.add("pay", "r1", "egress", {T0: 5}, "alice")  # a second gateway node
    acc.add("pay", "r2", "ingress", {T0: 7}, "alice")
    acc.add("pay", "r2", "egress", {T0: 3, T0 + 60: 4}, "")
    acc.add("pay", "r1", "egress", {T0: 1}, "bob")
    first, second = acc.minutes()
    assert first.routes == {"r1": {"ingress": 0, "egress": 16}, "r2": {"ingress": 7, "egress": 3}}
    assert first.consumers == {"alice": {"ingress": 7, "egress": 15}, ANONYMOUS_CONSUMER: {"ingress": 0, "egress": 3},
                               "bob": {"ingress": 0, "egress": 1}}
    assert second.consumers == {ANONYMOUS_CONSUMER: {"ingress": 0, "egress": 4}}
    for bucket in (first, second):
        assert sum(e["ingress"] + e["egress"] for e in bucket.consumers.values()) == bucket.total


def many_consumers(count, label_length=20):
    bucket = BucketUsage("big", T0)
    for i in range(count):
        bucket.add("r", "egress", 1000 + i, f"c{i:05d}".ljust(label_length, "x"))
    return bucket


def test_consumers_are_bounded_like_routes_the_busiest_kept_and_the_rest_summed():
    bucket = many_consumers(MAX_CONSUMERS + 40)
    bounded = bucket.bounded()
    assert len(bounded.consumers) == MAX_CONSUMERS
    busiest = sorted(bucket.consumers, key=lambda c: -bucket.consumers[c]["egress"])[:MAX_CONSUMERS - 1]
    assert set(bounded.consumers) == set(busiest) | {OTHER_CONSUMERS}
    assert bounded.consumers[OTHER_CONSUMERS] == {"ingress": 0, "egress": sum(1000 + i for i in range(41))}
    assert sum(e["egress"] for e in bounded.consumers.values()) == bucket.egress == bounded.egress


def test_long_consumer_names_are_shortened_like_route_labels():
    name = "k" * 900
    bounded = many_consumers(0)
    bounded.add("r", "ingress", 5, name)
    assert list(bounded.bounded().consumers) == [stored_label(name)]
    assert len(stored_label(name).encode()) <= MAX_LABEL_BYTES


def test_sums_of_buckets_sum_consumers_and_a_part_without_consumer_data_makes_the_sum_unknown():
    one, two = BucketUsage("pay", T0), BucketUsage("pay", T0 + 60)
    one.add("r", "egress", 5, "alice")
    two.add("r", "egress", 6, "alice")
    two.add("r", "ingress", 2, "")
    total = sum_buckets("pay", T0, [one, two])
    assert total.consumers == {"alice": {"ingress": 0, "egress": 11}, ANONYMOUS_CONSUMER: {"ingress": 2, "egress": 0}}
    old = BucketUsage("pay", T0 + 120, {"r": {"ingress": 0, "egress": 9}}, {}, None)  # written before consumers
    mixed = sum_buckets("pay", T0, [one, old, two])
    assert mixed.consumers is None and mixed.egress == 20  # the service's bytes stay exact


def test_an_item_written_before_consumers_reads_as_no_consumer_data(aws):
    store = bootstrap.current().store
    bucket = BucketUsage("pay", T0)
    bucket.add("r", "egress", 8, "alice")
    store.put_buckets("1m", [bucket])
    item = UsageBucket("USAGE#old", "1m#x", service="old", level="1m", start=T0, ingress=0, egress=3,
                       routes={"r": {"ingress": 0, "egress": 3}})
    item.save()
    assert store.query_buckets("pay", "1m", T0, T0 + 60)[0].consumers == {"alice": {"ingress": 0, "egress": 8}}
    old = UsageBucket.get("USAGE#old", "1m#x")
    assert old.consumers is None


# -- the collector ----------------------------------------------------------------------------
def kong37(consumer, instance, route="r", direction="egress"):
    return {"__name__": "kong_bandwidth_bytes", "service": "pay", "route": route, "direction": direction,
            "workspace": "default", "consumer": consumer, "instance": instance, "job": "kong"}


def test_each_consumer_series_is_counted_exactly_through_a_reset_and_adds_up_to_the_service(collector):
    col, prom = collector
    alice = scrape(T0 - 600, T0 + 1800, 15, iter(lambda: 100, None))
    alice += scrape(T0 + 1800, T0 + 3600, 15, iter(lambda: 7, None))  # node a restarted: a reset
    prom.add(kong37("alice", "a:8001"), alice)
    prom.add(kong37("alice", "b:8001"), scrape(T0 + 600, T0 + 3600, 15, iter(lambda: 3, None)))  # born
    prom.add(kong37("", "a:8001", route="r2", direction="ingress"), scrape(T0 - 60, T0 + 3600, 30, iter(lambda: 5, None)))
    prom.add({k: v for k, v in kong37("", "old:8001").items() if k not in ("consumer", "workspace", "direction")}
             | {"__name__": "kong_bandwidth", "type": "egress"}, scrape(T0 - 60, T0 + 3600, 60, iter(lambda: 11, None)))
    assert col.run(now=T0 + 3600 + 31).status == "ok"
    store = bootstrap.current().store
    minutes = store.query_buckets("pay", "1m", T0, T0 + 3600)
    total = sum_buckets("pay", T0, minutes)
    assert total.consumers == {"alice": {"ingress": 0, "egress": 120 * 100 + 120 * 7 + 200 * 3},
                               ANONYMOUS_CONSUMER: {"ingress": 120 * 5, "egress": 60 * 11}}
    assert sum(e["ingress"] + e["egress"] for e in total.consumers.values()) == total.total
    hour = store.query_buckets("pay", "1h", T0, T0 + 3600)[0]
    assert hour.consumers == total.consumers  # rollups sum consumers too
    fives = store.query_buckets("pay", "5m", T0, T0 + 3600)
    assert sum_buckets("pay", T0, fives).consumers == total.consumers


# -- service charts ---------------------------------------------------------------------------
@pytest.fixture
def collected(client, config):
    """Ten minutes to T0+10m: alice 1000 B/min egress on route a, bob 20 B/min egress on route b,
    anonymous 10 B/min ingress on route b."""
    prom = FakePrometheus()
    prom.add(kong37("alice", "n1", route="a"), [(T0 - 60 + 60 * i, 1000 * i) for i in range(12)])
    prom.add(kong37("bob", "n1", route="b"), [(T0 - 60 + 60 * i, 20 * i) for i in range(12)])
    prom.add(kong37("", "n1", route="b", direction="ingress"), [(T0 - 60 + 60 * i, 10 * i) for i in range(12)])
    config.start(prometheus=prom).collector.run(now=T0 + 600)
    ticks = itertools.count()
    config.start(prometheus=prom, clock=lambda: T0 + 630 + next(ticks) / 1000)
    return client


def get(client, path):
    response = client.http.get(path)
    if "csv" in response.headers.get("Content-Type", ""):
        return response.status_code, response.body.decode()
    return response.status_code, json.loads(response.body)


def test_a_consumer_filter_gives_only_that_consumers_bytes_at_every_step(collected):
    for step in ("1m", "5m", "15m", "1h"):
        status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step={step}"
                                      "&consumer=alice&direction=egress")
        assert status == 200 and body["consumer"] == "alice"
        assert [s["total_bytes"] for s in body["series"]] == [10_000], step
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=1m"
                                  "&consumer=(anonymous)&direction=total")
    assert [p["bytes"] for p in body["series"][0]["points"]] == [10] * 10
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=5m&consumer=nobody")
    assert [s["total_bytes"] for s in body["series"]] == [0, 0]  # collected, no traffic: 0, not null


def test_split_by_consumer_gives_one_series_per_consumer_adding_up_to_the_service(collected):
    path = f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 900}&step=15m&direction=total"
    status, whole = get(collected, path)
    status, body = get(collected, path + "&split=consumer")
    assert status == 200 and body["split"] == "consumer"
    totals = {s["consumer"]: s["total_bytes"] for s in body["series"]}
    assert totals == {ANONYMOUS_CONSUMER: 100, "alice": 10_000, "bob": 200}
    assert sum(totals.values()) == whole["series"][0]["total_bytes"] == 10_300
    assert all(s["points"][0]["partial"] for s in body["series"])  # the quarter is still filling


def test_consumer_csv_has_a_consumer_column_and_other_csv_keeps_its_columns(collected):
    status, text = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 120}&step=1m"
                                  "&split=consumer&direction=egress&format=csv")
    lines = text.splitlines()
    assert lines[0] == "time,service,direction,route,consumer,bytes,partial"
    assert lines[1:] == ["2026-11-30T23:00:00Z,pay,egress,,(anonymous),0,false",
                         "2026-11-30T23:01:00Z,pay,egress,,(anonymous),0,false",
                         "2026-11-30T23:00:00Z,pay,egress,,alice,1000,false",
                         "2026-11-30T23:01:00Z,pay,egress,,alice,1000,false",
                         "2026-11-30T23:00:00Z,pay,egress,,bob,20,false",
                         "2026-11-30T23:01:00Z,pay,egress,,bob,20,false"]
    status, text = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 120}&step=1m&format=csv")
    assert text.splitlines()[0] == "time,service,direction,route,bytes,partial"


def test_buckets_written_before_consumers_are_null_by_consumer_and_unchanged_by_service(collected):
    for item in UsageBucket.query("USAGE#pay"):
        if int(item.start) < T0 + 300:  # the first five minutes and their rollups' parts
            item.consumers = item.packed_consumers = None
            item.save()
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=1m"
                                  "&consumer=alice&direction=egress")
    assert [p["bytes"] for p in body["series"][0]["points"]] == [None] * 5 + [1000] * 5
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=1m&direction=egress")
    assert body["series"][0]["total_bytes"] == 10_200


@pytest.mark.parametrize("query, parameter", [
    ("consumer=", "consumer"),
    ("consumer=a%0Ab", "consumer"),
    ("consumer=%00", "consumer"),
    ("consumer=" + "x" * 1001, "consumer"),
    ("consumer=alice&route=a", "consumer"),
    ("consumer=alice&split=route", "consumer"),
    ("split=consumer&route=a", "split"),
    ("split=consumers", "split"),
])
def test_bad_consumer_parameters_are_400_naming_the_parameter(collected, query, parameter):
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&{query}")
    assert status == 400 and body["error"]["parameter"] == parameter and body["error"]["message"]


def test_a_long_consumer_name_is_found_by_its_full_name(collected):
    name = "\u00e9" * 400  # 800 bytes of UTF-8: stored shortened
    bucket = BucketUsage("pay", T0)
    bucket.add("a", "egress", 1000, "alice")
    bucket.add("a", "egress", 20, "bob")
    bucket.add("b", "ingress", 10, "")
    bucket.add("b", "ingress", 77, name)
    bootstrap.current().store.put_buckets("1m", [bucket])
    from urllib.parse import quote
    status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 60}&step=1m"
                                  f"&consumer={quote(name)}&direction=ingress")
    assert status == 200 and body["series"][0]["total_bytes"] == 77


def test_charts_by_consumer_and_by_route_match_the_published_schema(collected):
    import jsonschema

    from chalicelib.api.apidocs import openapi_spec
    schema = {"$ref": "#/components/schemas/Chart", "components": openapi_spec()["components"]}
    for query in ("split=consumer", "consumer=alice", "split=route", "direction=total"):
        status, body = get(collected, f"/v1/services/pay/bandwidth?start={T0}&end={T0 + 600}&step=5m&{query}")
        assert status == 200 and body["series"]
        jsonschema.validate(body, schema)
