"""The collector's plan, alone (no DynamoDB, no Prometheus): which minutes a run collects, and
per shard role which services and queries a chunk takes on."""
from types import SimpleNamespace

import pytest

from chalicelib.collect import plan, shards
from chalicelib.collect.record import merge_gaps
from chalicelib.core.models import SERVICES_PK, ServiceUsage

T = 1_796_083_200  # 2026-12-01T00:00Z


def settings(**overrides):
    values = dict(shard_count=4, collect_lag_seconds=30, initial_backfill_minutes=60, max_backfill_minutes=120,
                  late_sample_seconds=120, kong_schema="auto", gateways=("kong",), chunk_minutes=15)
    return SimpleNamespace(**{**values, **overrides})


def item(name):
    return ServiceUsage(SERVICES_PK, name, service=name)


class Store:
    """The reads a role makes, from dicts."""

    def __init__(self, services=(), assigned=None, incoming=None, first_collection_start=None):
        self.items = {name: item(name) for name in services}
        self.assigned = assigned or {}  # shard -> names
        self.incoming = incoming or {}  # shard -> "<minute>:<service>" entries
        self.first_collection_start = first_collection_start

    def assignment(self, shard):
        return SimpleNamespace(services=set(self.assigned.get(shard, ())), incoming=set(self.incoming.get(shard, ())))

    def assignments(self, shard_count):
        return {shard: self.assignment(shard) for shard in range(1, shard_count)}

    def get_services(self, names):
        return [self.items[name] for name in sorted(names) if name in self.items]

    def list_services(self, checkpoints=False):
        return list(self.items.values())

    def state(self, shard=0):
        return SimpleNamespace(collection_start=self.first_collection_start)


class Prometheus:
    def __init__(self, names):
        self.names = names

    def label_values(self, label, selector, start, end):
        return list(self.names) if label == "service" else []  # no Kong workspace label


def state(watermark=None, collection_start=None):
    return SimpleNamespace(watermark=watermark, collection_start=collection_start)


def test_a_first_run_backfills_the_initial_minutes_up_to_now_minus_the_lag():
    span = plan.run_span(state(), T + 45, settings(), plan.Unsharded(Store(), settings(shard_count=1)))
    assert (span.start, span.end, span.collection_start, span.first) == (T - 3600, T, T - 3600, True)
    assert span.skipped is None
    assert list(span.chunks(15))[:2] == [(T - 3600, T - 2700), (T - 2700, T - 1800)]
    assert list(span.chunks(25))[-1] == (T - 600, T)  # the last chunk ends at the span's end


def test_a_later_run_starts_at_the_watermark():
    span = plan.run_span(state(T - 300, T - 7200), T + 45, settings(), plan.Unsharded(Store(), settings()))
    assert (span.start, span.end, span.collection_start, span.first) == (T - 300, T, T - 7200, False)
    assert list(span.chunks(15)) == [(T - 300, T)]


def test_minutes_beyond_the_backfill_limit_are_skipped_as_a_gap():
    span = plan.run_span(state(T - 5 * 3600, T - 6 * 3600), T + 45, settings(), plan.Unsharded(Store(), settings()))
    assert span.skipped == [T - 5 * 3600, T - 7200] and span.start == T - 7200 and span.asked_from == T - 5 * 3600


def test_a_fixed_shards_history_begins_where_the_catch_alls_does():
    store = Store(first_collection_start=T - 86400)
    span = plan.run_span(state(), T + 45, settings(), plan.role_for(store, settings(), None, 2))
    assert span.collection_start == T - 86400 and span.start == T - 3600


def test_each_shard_gets_its_role():
    assert isinstance(plan.role_for(Store(), settings(shard_count=1), None, 0), plan.Unsharded)
    assert isinstance(plan.role_for(Store(), settings(), None, 0), plan.CatchAll)
    fixed = plan.role_for(Store(), settings(), None, 3)
    assert isinstance(fixed, plan.FixedShard) and fixed.shard == 3
    with pytest.raises(ValueError, match="shard 4 is not one of 0..3"):
        plan.role_for(Store(), settings(), None, 4)


def test_unsharded_reads_every_series_of_the_whole_fleet():
    role = plan.Unsharded(Store(["pay", "cdn"]), settings(shard_count=1))
    assert sorted(role.services()) == ["cdn", "pay"]
    assert role.plan(T, T + 900, role.services()).matchers == [""]


def test_the_catch_all_plans_the_unassigned_services_prometheus_names_a_bounded_batch_at_a_time(monkeypatch):
    monkeypatch.setattr(plan, "CATCH_ALL_BATCH", 2)
    store = Store(["old", "pay"], assigned={1: ["pay"]})
    role = plan.CatchAll(store, settings(), Prometheus(["pay", "new-a", "new-b", "new-c"]))
    services = {"pay": item("pay"), "kept": item("kept")}  # pay: taken by shard 1 since the run began
    chunk = role.plan(T, T + 900, services)
    assert chunk.dropped == {"pay"} and chunk.deferred == 2  # kept, new-a | new-b, new-c wait
    assert chunk.matchers == shards.owned_matchers({"kept", "new-a"}) + [shards.UNMATCHED_MATCHER]
    assert chunk.loaded == {}  # neither new-a nor the unmatched traffic has an item yet
    assert services.keys() == {"pay", "kept"}  # planning changes nothing


def test_the_catch_all_loads_the_items_of_services_it_meets_again():
    store = Store(["old"])
    role = plan.CatchAll(store, settings(), Prometheus(["old"]))
    chunk = role.plan(T, T + 900, {})
    assert list(chunk.loaded) == ["old"] and chunk.deferred == 0


def test_a_fixed_shard_takes_over_the_services_handed_to_it_by_the_chunks_start():
    store = Store(["a", "b", "c", "mine"], assigned={2: ["mine"]}, incoming={2: [f"{T - 600}:a", f"{T - 600}:b",
                                                                                 f"{T - 300}:c", f"{T + 900}:later"]})
    role = plan.FixedShard(store, settings(), 2)
    services = role.services()
    chunk = role.plan(T, T + 900, services)
    assert [(at, sorted(group)) for at, group in chunk.handed_over] == [(T - 600, ["a", "b"]), (T - 300, ["c"])]
    assert sorted(chunk.taken_over) == [f"{T - 600}:a", f"{T - 600}:b", f"{T - 300}:c"]  # "later" waits
    assert chunk.matchers == shards.owned_matchers({"a", "b", "c", "mine"})
    assert all(group[name].shard == 2 for _, group in chunk.handed_over for name in group)


def test_gaps_that_touch_or_overlap_merge():
    assert merge_gaps([[300, 600], [0, 120], [120, 180], [500, 900]]) == [[0, 180], [300, 900]]
