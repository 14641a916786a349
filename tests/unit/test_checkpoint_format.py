"""The checkpoint's stored form (collect/checkpoint.py): compact, exact, and readable whatever a
release before it wrote (24-byte records with no header)."""
import math
import struct

import pytest

from chalicelib import bootstrap
from chalicelib.collect.checkpoint import Checkpoint, Reading, baseline_for_chunk, pack_with_previous
from chalicelib.core.errors import StoreError
from chalicelib.core.models import ServiceUsage
from chalicelib.core.store import CHECKPOINT_INLINE_BYTES
from tests.unit.test_collector import T0, collector, kong3, scrape  # noqa: F401 (collector: the fixture)

AT_MS = T0 * 1000
LIFETIME = 10**12  # a gateway counter a terabyte into its life


def sid(n):
    return n.to_bytes(8, "big")


def legacy(checkpoint):
    """The stored form before this one: 24 bytes a series (id, float64 value, int64 ms), no header."""
    return b"".join(struct.pack("<8sdq", s, r.value, r.at_ms) for s, r in sorted(checkpoint.readings.items()))


def item_with(current_blob, current_at, previous_blob, previous_at):
    item = ServiceUsage.first_seen_at("pay", T0, T0)
    item.checkpoint, item.checkpoint_at = current_blob, current_at
    item.previous_checkpoint, item.previous_checkpoint_at = previous_blob, previous_at
    return item


def a_minute(series, increase=50_000, base=LIFETIME):
    """A checkpoint one scrape after another, every series grown by ``increase`` (whole bytes)."""
    before = Checkpoint(T0, {sid(n): Reading(float(base + n), AT_MS) for n in range(series)})
    after = Checkpoint(T0 + 60, {s: Reading(r.value + increase, AT_MS + 60_000) for s, r in before.readings.items()})
    return after, before


def test_a_busy_minute_takes_seventeen_bytes_a_series_where_the_old_records_took_forty_eight():
    current, previous = a_minute(1000)
    current_blob, previous_blob = pack_with_previous(current, previous)
    # 8-byte id + a terabyte counter in 6 varint bytes; the previous one: +50,000 in 3 bytes.
    assert len(current_blob) == 1000 * 14 + 11 and len(previous_blob) == 1000 * 3 + 14
    assert len(legacy(current)) + len(legacy(previous)) == 1000 * 48
    assert Checkpoint.unpack(current_blob, T0 + 60).readings == current.readings
    assert Checkpoint.unpack(previous_blob, T0, current_blob).readings == previous.readings


def test_series_unchanged_or_new_in_the_minute_cost_the_previous_checkpoint_a_byte_per_run():
    current, previous = a_minute(1000)
    for n in range(500):  # idle this minute: the same reading in both
        current.readings[sid(n)] = previous.readings[sid(n)]
    for n in range(1000, 1300):  # first seen this minute: absent from the previous one
        current.readings[sid(n)] = Reading(float(n), AT_MS + 60_000)
    current_blob, previous_blob = pack_with_previous(current, previous)
    assert len(previous_blob) < 500 * 3 + 40  # only the 500 that moved take bytes of their own
    assert Checkpoint.unpack(current_blob, T0 + 60).readings == current.readings
    assert Checkpoint.unpack(previous_blob, T0, current_blob).readings == previous.readings


def test_values_that_are_not_whole_numbers_and_series_only_in_the_previous_checkpoint_are_kept_exactly():
    previous = Checkpoint(T0, {sid(1): Reading(0.1, AT_MS), sid(2): Reading(2.0**70, AT_MS - 15_000),
                               sid(3): Reading(7.0, AT_MS - 30_000), sid(4): Reading(12.0, AT_MS),
                               sid(9): Reading(5.5, AT_MS)})  # 9: gone from the current one
    current = Checkpoint(T0 + 60, {sid(1): Reading(3.0, AT_MS + 60_000), sid(2): Reading(2.0**70 + 2.0**20, AT_MS),
                                   sid(3): Reading(7.25, AT_MS), sid(4): Reading(-0.0, AT_MS + 45_000),
                                   sid(5): Reading(math.inf, AT_MS)})
    current_blob, previous_blob = pack_with_previous(current, previous)
    back, before = Checkpoint.unpack(current_blob, T0 + 60), Checkpoint.unpack(previous_blob, T0, current_blob)
    assert back.readings == current.readings and before.readings == previous.readings
    assert [type(r.value) for r in back.readings.values()] == [float] * 5
    assert math.copysign(1, back.readings[sid(4)].value) == -1  # a float64 as it was, sign and all


def test_no_stored_checkpoint_has_the_length_of_old_records():
    # Old blobs are told apart by their length alone (a multiple of 24): a new one of such a
    # length gets a byte of padding, and still reads back.
    padded = 0
    for series in range(1, 60):
        current, previous = a_minute(series, increase=series * 997, base=series * 1_000_003)
        for blob in pack_with_previous(current, previous):
            assert len(blob) % 24 != 0
        current_blob, previous_blob = pack_with_previous(current, previous)
        padded += current_blob.endswith(b"\0") + previous_blob.endswith(b"\0")
        assert Checkpoint.unpack(previous_blob, T0, current_blob).readings == previous.readings
    assert padded  # the case arose


def test_an_empty_checkpoint_is_stored_as_no_bytes():
    current, _ = a_minute(3)
    assert pack_with_previous(current, Checkpoint()) == (current.pack(), b"")
    assert Checkpoint.unpack(b"", T0).readings == {} and Checkpoint.unpack(None, None).at is None


def test_checkpoints_written_before_the_change_are_read_as_they_were():
    current, previous = a_minute(40)
    old = item_with(legacy(current), T0 + 60, legacy(previous), T0)
    assert baseline_for_chunk(old, T0 + 60).readings == current.readings
    assert baseline_for_chunk(old, T0).readings == previous.readings  # a retried chunk's baseline


def test_an_old_record_that_begins_like_a_new_header_is_still_read_as_an_old_record():
    for first in (1, 2):
        old = Checkpoint(T0, {bytes([first]) + bytes(7): Reading(5.0, AT_MS), b"\xff" * 8: Reading(9.0, AT_MS)})
        blob = legacy(old)
        assert blob[0] == first
        assert Checkpoint.unpack(blob, T0).readings == old.readings


def test_a_new_current_checkpoint_beside_an_old_previous_one_is_read_too():
    current, previous = a_minute(40)
    mixed = item_with(current.pack(), T0 + 60, legacy(previous), T0)
    assert baseline_for_chunk(mixed, T0 + 60).readings == current.readings
    assert baseline_for_chunk(mixed, T0).readings == previous.readings


def test_a_previous_checkpoint_beside_another_current_one_stops_the_run_rather_than_miscount():
    current, previous = a_minute(10)
    _, previous_blob = pack_with_previous(current, previous)
    other, _ = a_minute(10, increase=1)
    with pytest.raises(StoreError, match="'pay'.*unreadable.*another current"):
        baseline_for_chunk(item_with(other.pack(), T0 + 60, previous_blob, T0), T0)


@pytest.mark.parametrize("damage, reason", [
    (lambda blob: bytes([9]) + blob[1:], "unknown checkpoint format 9"),
    (lambda blob: blob[:-5], "truncated"),
    (lambda blob: blob + b"\7\7", "after the last series"),
], ids=["unknown-format", "truncated", "trailing-bytes"])
def test_a_damaged_checkpoint_stops_the_run_rather_than_count_lifetime_counters_from_zero(damage, reason):
    current, _ = a_minute(10)
    with pytest.raises(StoreError, match=reason):
        baseline_for_chunk(item_with(damage(current.pack()), T0, None, None), T0 + 60)


def test_a_compact_checkpoint_too_large_for_its_item_goes_to_pages_and_reads_back(aws):
    current, previous = a_minute(8000)
    current_blob, previous_blob = pack_with_previous(current, previous)
    assert len(current_blob) + len(previous_blob) > CHECKPOINT_INLINE_BYTES
    store = bootstrap.current().store
    store.put_services([item_with(current_blob, T0 + 60, previous_blob, T0)])
    assert ServiceUsage.get("SERVICES", "pay").checkpoint_pages == 1
    item = store.get_services(["pay"])[0]
    assert baseline_for_chunk(item, T0).readings == previous.readings


def store_as_old_records(previous_only=False):
    """Rewrite the service item's checkpoints as a release before this one wrote them."""
    item = ServiceUsage.get("SERVICES", "pay")
    current = Checkpoint.unpack(item.checkpoint, item.checkpoint_at)
    previous = Checkpoint.unpack(item.previous_checkpoint, item.previous_checkpoint_at, item.checkpoint)
    if not previous_only:
        item.checkpoint = legacy(current)
    item.previous_checkpoint = legacy(previous)
    item.save()


def test_the_collector_counts_on_exactly_from_checkpoints_an_older_release_wrote(collector):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 1200, 15, iter([LIFETIME] + [100] * 99)))
    assert col.run(now=T0 + 600 + 31).status == "ok"
    store_as_old_records()
    assert len(ServiceUsage.get("SERVICES", "pay").checkpoint) == 24
    assert col.run(now=T0 + 1200 + 31).status == "ok"
    assert bootstrap.current().store.range_total("pay", T0 + 600, T0 + 1200).egress == 40 * 100
    assert len(ServiceUsage.get("SERVICES", "pay").checkpoint) % 24 != 0  # written anew in the compact form


@pytest.mark.parametrize("old_previous", [False, True], ids=["compact", "previous-as-old-records"])
def test_a_chunk_retried_after_its_checkpoint_was_written_starts_from_the_previous_one(collector, old_previous):
    col, prom = collector
    prom.add(kong3("pay", "r", "egress"), scrape(T0 - 300, T0 + 1200, 15, iter([LIFETIME] + [100] * 99)))
    assert col.run(now=T0 + 600 + 31).status == "ok"
    store = bootstrap.current().store
    update_state = store.update_state

    def lost_before_the_watermark(run_id, shard=0, **fields):
        if "watermark" in fields:
            raise StoreError("throttled")
        update_state(run_id, shard, **fields)

    store.update_state = lost_before_the_watermark
    with pytest.raises(Exception, match="throttled"):
        col.run(now=T0 + 660 + 31)
    del store.update_state
    item = ServiceUsage.get("SERVICES", "pay")
    assert (int(item.checkpoint_at), int(item.previous_checkpoint_at)) == (T0 + 660, T0 + 600)
    if old_previous:
        store_as_old_records(previous_only=True)
    assert col.run(now=T0 + 660 + 31).status == "ok"  # the same chunk again
    assert store.range_total("pay", T0 + 600, T0 + 660).egress == 4 * 100  # not counted twice
    assert col.run(now=T0 + 1200 + 31).status == "ok"
    assert store.range_total("pay", T0 + 600, T0 + 1200).egress == 40 * 100
