"""A service's checkpoint grows 10-18 bytes a series (the current one and the one a retried
chunk starts from, collect/checkpoint.py). Per-consumer metrics multiply series (routes x consumers x directions x
nodes), so a busy service outgrows DynamoDB's 400 KB item: the store keeps such a checkpoint in
pages beside the item, and the collector still counts every byte of it."""
import pytest

from chalicelib import bootstrap
from chalicelib.core.errors import StoreError
from chalicelib.core.models import CheckpointPage, ServiceUsage, checkpoint_pk
from chalicelib.core.store import CHECKPOINT_INLINE_BYTES, CHECKPOINT_PAGE_BYTES
from tests.unit.test_collector import T0, collector, scrape  # noqa: F401 (collector: the fixture)


def big_item(service, at, size, fill=b"\1"):
    item = ServiceUsage.first_seen_at(service, T0, T0)
    item.checkpoint, item.checkpoint_at = fill * size, at
    item.previous_checkpoint, item.previous_checkpoint_at = fill[::-1] * (size - 24), at - 60
    return item


def pages_of(service):
    return sorted(page.sk for page in CheckpointPage.query(checkpoint_pk(service)))


def test_a_checkpoint_too_large_for_its_item_is_stored_in_pages_and_read_back_whole(aws):
    store = bootstrap.current().store
    size = 3 * CHECKPOINT_PAGE_BYTES // 2  # over one page: 450 KB, more than any item holds
    assert store.put_services([big_item("wide", T0 + 600, size), big_item("small", T0 + 600, 240)]) == 2
    assert store.oversized == []
    raw = ServiceUsage.get("SERVICES", "wide")
    assert raw.checkpoint is None and raw.checkpoint_pages == 2 and raw.previous_checkpoint_pages == 2
    assert len(pages_of("wide")) == 4 and pages_of("small") == []  # a small one stays in its item
    for item in [next(i for i in store.list_services(checkpoints=True) if i.service == "wide"),
                 store.get_services(["wide"])[0]]:
        assert bytes(item.checkpoint) == b"\1" * size
        assert bytes(item.previous_checkpoint) == b"\1" * (size - 24)
        assert item.checkpoint_pages is None and item.previous_checkpoint_pages is None
    listed = next(i for i in store.list_services() if i.service == "wide")
    assert listed.checkpoint is None and listed.checkpoint_pages is None  # readers get no checkpoint


def test_writing_the_next_checkpoint_keeps_the_previous_ones_pages_and_drops_older_ones(aws):
    store = bootstrap.current().store
    size = CHECKPOINT_INLINE_BYTES
    store.put_services([big_item("wide", T0 + 600, size)])
    first = pages_of("wide")
    item = store.get_services(["wide"])[0]
    item.previous_checkpoint, item.previous_checkpoint_at = item.checkpoint, item.checkpoint_at
    item.checkpoint, item.checkpoint_at = b"\2" * size, T0 + 660
    store.put_services([item])
    # The checkpoint of T0+600 is now the previous one: its pages stay; those of T0+540 are gone.
    assert pages_of("wide") == [sk for sk in first if sk.startswith(f"{T0 + 600:012d}")] + \
        [f"{T0 + 660:012d}#0000"]
    again = store.get_services(["wide"])[0]
    assert bytes(again.checkpoint) == b"\2" * size and bytes(again.previous_checkpoint) == b"\1" * size


def test_a_missing_page_fails_the_read_rather_than_counting_lifetime_counters_again(aws):
    store = bootstrap.current().store
    store.put_services([big_item("wide", T0 + 600, CHECKPOINT_INLINE_BYTES)])
    CheckpointPage.get(checkpoint_pk("wide"), pages_of("wide")[-1]).delete()
    with pytest.raises(StoreError, match="missing pages"):
        store.get_services(["wide"])


def test_a_service_with_ten_thousand_series_is_counted_exactly_run_after_run(collector):
    col, prom = collector
    routes, consumers = 25, 200  # x 2 directions = 10,000 series
    # A megabyte a minute each (counters of millions: 4 bytes a value), so the two checkpoints
    # (~120 KB and ~40 KB) are too large for the item.
    for route in range(routes):
        for consumer in range(consumers):
            for direction in ("ingress", "egress"):
                labels = {"__name__": "kong_bandwidth_bytes", "service": "busy", "route": f"r{route}",
                          "direction": direction, "consumer": f"c{consumer}", "workspace": "default",
                          "instance": "node-a:8001", "job": "kong"}
                prom.add(labels, scrape(T0 - 120, T0 + 1200, 60, iter(lambda: 1_000_000, None)))
    store = bootstrap.current().store
    assert col.run(now=T0 + 600 + 31).status == "ok"
    assert store.get_service("busy").checkpoint_pages  # too large for the item
    assert col.run(now=T0 + 1200 + 31).status == "ok"  # starts from the paged checkpoint
    assert store.take_oversized() == []
    series = routes * consumers * 2
    every_byte = series * 1_000_000 * 22  # 22 samples of +1 MB a series, minute T0-120 to minute T0+1140
    assert store.get_service("busy").total == every_byte
    assert store.range_total("busy", T0 - 120, T0 + 1200).total == every_byte


def test_a_checkpoint_that_fits_its_item_again_leaves_no_pages_behind(aws):
    # Checkpoints paged as 24-byte records fit the item once rewritten compactly.
    store = bootstrap.current().store
    store.put_services([big_item("wide", T0 + 600, CHECKPOINT_INLINE_BYTES)])
    assert len(pages_of("wide")) == 2
    item = store.get_services(["wide"])[0]
    item.previous_checkpoint, item.previous_checkpoint_at = b"\3" * 100, T0 + 600
    item.checkpoint, item.checkpoint_at = b"\4" * 100, T0 + 660
    store.put_services([item])
    assert pages_of("wide") == []
    raw = ServiceUsage.get("SERVICES", "wide")
    assert bytes(raw.checkpoint) == b"\4" * 100 and raw.checkpoint_pages is None and raw.previous_checkpoint_pages is None
