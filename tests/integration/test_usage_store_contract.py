"""The usage store's contract (chalicelib/core/ports.py: ``UsageReader``, what the API and the
alerts read; ``UsageWriter``, what the collector writes), run against the in-memory fake the
unit tests use (tests/fakes/usage_store.py) and against ``UsageStore`` on a moto server. The
same assertions pass on both, so a unit test on the fake reads what the real table would hold."""
import pytest

from chalicelib.core import ports
from chalicelib.core.errors import StoreError
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from chalicelib.core.store import UsageStore
from chalicelib.core.usage import BucketUsage
from tests.fakes.usage_store import InMemoryUsageStore

T0 = 1_764_547_200  # 2025-12-01T00:00:00Z, a whole day (every level's bucket starts here)


@pytest.fixture(params=["fake", "real"])
def store(request):
    if request.param == "fake":
        return InMemoryUsageStore()
    request.getfixturevalue("aws_server")  # a fresh table on the moto server
    return UsageStore()


def bucket(service, start, egress, ingress=0, route="r", consumer=""):
    usage = BucketUsage(service, start)
    usage.add(route, "egress", egress, consumer)
    if ingress:
        usage.add(route, "ingress", ingress, consumer)
    return usage


def service_item(name, total, shard=None, checkpoint=b"\x01\x02"):
    return ServiceUsage(SERVICES_PK, name, service=name, first_seen=T0, last_active=T0 + 600, period_kind="month",
                        period_anchor=1, period_start=T0, period_end=T0 + 31 * 86400, ingress=0, egress=total,
                        total=total, through=T0 + 600, checkpoint=checkpoint, checkpoint_at=T0 + 540,
                        shard=shard)


def test_both_implement_both_ports(store):
    for port in (ports.UsageReader, ports.UsageWriter):
        assert isinstance(store, port) and ports.missing_methods(store, port) == []


# -- buckets -----------------------------------------------------------------------------------
def test_buckets_read_back_by_key_at_their_level_only(store):
    written = [bucket("pay", T0, 700, 10, consumer="acme"), bucket("pay", T0 + 60, 5), bucket("media", T0, 9)]
    assert store.put_buckets("1m", written) == 3
    found = store.get_buckets("1m", [("pay", T0), ("pay", T0 + 60), ("pay", T0 + 120), ("media", T0)])
    assert sorted(found) == [("media", T0), ("pay", T0), ("pay", T0 + 60)]
    first = found[("pay", T0)]
    assert (first.service, first.start, first.egress, first.ingress) == ("pay", T0, 700, 10)
    assert first.routes == {"r": {"egress": 700, "ingress": 10}}
    assert first.consumers == {"acme": {"egress": 700, "ingress": 10}}
    assert store.get_buckets("5m", [("pay", T0)]) == {}  # the same start at another level is another item


def test_a_bucket_written_again_is_replaced_not_added_to(store):
    store.put_buckets("1m", [bucket("pay", T0, 700)])
    store.put_buckets("1m", [bucket("pay", T0, 300)])
    assert store.get_buckets("1m", [("pay", T0)])[("pay", T0)].egress == 300


def test_a_query_returns_the_buckets_lying_whole_in_the_range_in_time_order(store):
    store.put_buckets("5m", [bucket("pay", T0 + 300 * i, i + 1) for i in (3, 0, 2, 1)] + [bucket("other", T0, 99)])
    assert [b.start for b in store.query_buckets("pay", "5m", T0, T0 + 1200)] == [T0, T0 + 300, T0 + 600, T0 + 900]
    # [T0+60, T0+1000): T0's bucket starts before the range, T0+900's ends after it
    assert [b.egress for b in store.query_buckets("pay", "5m", T0 + 60, T0 + 1000)] == [2, 3]
    assert store.query_buckets("pay", "5m", T0 + 300, T0 + 300) == []
    assert store.query_buckets("pay", "5m", T0, T0 + 299) == []


def test_range_total_reads_the_coarsest_whole_buckets_that_tile_the_range(store):
    # Every minute holds 1 B and each 5-minute rollup a value of its own that is not the sum of its
    # minutes: the total shows which level each part of the range was read from.
    store.put_buckets("1m", [bucket("pay", T0 + 60 * i, 1) for i in range(15)])
    store.put_buckets("5m", [bucket("pay", T0, 70), bucket("pay", T0 + 300, 50), bucket("pay", T0 + 600, 30)])
    store.put_buckets("15m", [bucket("pay", T0, 500)])
    # [T0+60, T0+600): minutes 1-4 (4 B), then the 5-minute bucket at T0+300 (50 B)
    total = store.range_total("pay", T0 + 60, T0 + 600)
    assert (total.service, total.start, total.egress) == ("pay", T0 + 60, 54)
    assert store.range_total("pay", T0, T0 + 900).egress == 500  # one whole quarter
    assert store.range_total("pay", T0 + 300, T0 + 900).egress == 80  # two whole 5-minute buckets
    assert store.range_total("pay", T0 + 600, T0 + 780).egress == 3  # under five minutes: minutes only
    assert store.range_total("nobody", T0, T0 + 900).egress == 0


# -- services ----------------------------------------------------------------------------------
def test_services_are_listed_in_name_order_after_a_name_without_checkpoints_unless_asked(store):
    assert store.put_services([service_item(name, total) for name, total in
                               (("media", 20), ("pay", 30), ("auth", 10))]) == 3
    listed = list(store.list_services())
    assert [(s.service, int(s.total)) for s in listed] == [("auth", 10), ("media", 20), ("pay", 30)]
    assert all(s.checkpoint is None and s.checkpoint_at is None for s in listed)
    assert [s.service for s in store.list_services(after="auth")] == ["media", "pay"]
    with_checkpoints = list(store.list_services(checkpoints=True))
    assert [bytes(s.checkpoint) for s in with_checkpoints] == [b"\x01\x02"] * 3
    assert [int(s.checkpoint_at) for s in with_checkpoints] == [T0 + 540] * 3


def test_services_read_by_name_carry_their_checkpoints(store):
    store.put_services([service_item("pay", 30), service_item("media", 20)])
    assert store.get_service("nobody") is None
    one = store.get_service("pay")
    assert (one.service, int(one.total), bytes(one.checkpoint)) == ("pay", 30, b"\x01\x02")
    several = store.get_services(["media", "nobody", "pay"])
    assert sorted((s.service, int(s.egress)) for s in several) == [("media", 20), ("pay", 30)]


# -- collector state ---------------------------------------------------------------------------
def test_a_shard_without_state_reads_as_empty(store):
    state = store.state(3)
    assert state.watermark is None and state.run_id is None and list(state.gaps or []) == []


def test_the_run_lease_is_held_until_it_expires_and_only_its_holder_writes_the_state(store):
    assert store.acquire_lease("run-1", T0, 900) is True
    assert store.acquire_lease("run-2", T0 + 60, 900) is False  # run-1's lease is live
    store.update_state("run-1", watermark=T0 + 600, gaps=[[T0 - 600, T0]])
    with pytest.raises(StoreError, match="lease"):
        store.update_state("run-2", watermark=T0 + 1200)
    state = store.state()
    assert (int(state.watermark), state.run_id, int(state.running_since)) == (T0 + 600, "run-1", T0)
    assert [list(map(int, gap)) for gap in state.gaps] == [[T0 - 600, T0]]
    assert store.acquire_lease("run-2", T0 + 901, 900) is True  # expired: a dead run's lease
    store.update_state("run-2", running_since=None, last_error="boom")
    after = store.state()
    assert (after.run_id, after.running_since, after.last_error, int(after.watermark)) == (
        "run-2", None, "boom", T0 + 600)
    assert store.acquire_lease("run-3", T0 + 902, 900) is True  # released (running_since removed)


def test_shards_hold_their_own_leases_and_a_service_reads_the_state_of_its_shard(store):
    assert store.acquire_lease("catch-all", T0, 900, shard=0)
    assert store.acquire_lease("fixed", T0, 900, shard=2)
    store.update_state("catch-all", shard=0, watermark=T0 + 60, gaps=[[T0 - 120, T0 - 60]])
    store.update_state("fixed", shard=2, watermark=T0 + 120, gaps=[[T0 - 600, T0 - 300]])
    with pytest.raises(StoreError):
        store.update_state("catch-all", shard=2, watermark=0)
    moved = store.state_of_service(service_item("pay", 1, shard=2))
    assert int(moved.watermark) == T0 + 120
    assert [list(map(int, g)) for g in moved.gaps] == [[T0 - 600, T0 - 300], [T0 - 120, T0 - 60]]
    assert int(store.state_of_service(None).watermark) == T0 + 60
    assert int(store.state_of_service(service_item("media", 1)).watermark) == T0 + 60
