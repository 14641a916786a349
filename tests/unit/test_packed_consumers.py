"""A bucket's bytes per consumer are stored packed (core/packed.py): every name and number comes
back as it went in, items in the older map form still read, and what cannot be packed is kept as
a map."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import bootstrap
from chalicelib.core import packed
from chalicelib.core.errors import StoreError
from chalicelib.core.models import UsageBucket, bucket_sk
from chalicelib.core.store import bucket_usage
from chalicelib.core.usage import ANONYMOUS_CONSUMER, BucketUsage
from tests.unit.test_collector import T0

NAMES = st.text(min_size=1, max_size=40)  # any text: Kong accepts any username
COUNTS = st.dictionaries(NAMES, st.fixed_dictionaries({"ingress": st.integers(0, 2 ** 80),
                                                        "egress": st.integers(0, 2 ** 80)}), max_size=30)


@settings(max_examples=300, deadline=None)
@given(COUNTS)
def test_every_map_of_whole_byte_counts_comes_back_as_it_went_in(counts):
    blob = packed.pack(counts)
    assert blob is not None and packed.unpack(blob) == counts


def test_a_packed_entry_is_its_name_and_a_few_bytes():
    counts = {f"customer-{i:06d}": {"ingress": 1_500, "egress": 1_234_567} for i in range(50)}
    blob = packed.pack(counts)
    assert len(blob) == 1 + 50 * (1 + 15 + 2 + 3)
    # Lone surrogates (a label Prometheus escaped as \ud800) and a name with a NUL travel too.
    odd = {"\ud800x": {"ingress": 0, "egress": 1}, "a\x00b": {"ingress": 2, "egress": 0}, "é" * 90: {"ingress": 3, "egress": 4}}
    assert packed.unpack(packed.pack(odd)) == odd


@pytest.mark.parametrize("counts", [
    {"alice": {"ingress": 1.5, "egress": 0}},  # not a whole number
    {"alice": {"ingress": -1, "egress": 0}},
    {"alice": {"ingress": 1, "egress": 0, "other": 3}},
])
def test_a_map_the_packed_form_cannot_hold_is_not_packed(counts):
    assert packed.pack(counts) is None


@pytest.mark.parametrize("blob", [b"", b"\x02", b"\x01\x05ab", b"\x01\x02ab\x80", b"\x01\x02\xff\xfe\x01\x01",
                                  b"\x01" + b"\xff" * 100])
def test_a_blob_that_is_not_a_packed_map_is_refused_not_guessed(blob):
    with pytest.raises(packed.UnreadablePacked):
        packed.unpack(blob)


def test_the_store_writes_consumers_packed_and_reads_them_back_exactly(aws):
    store = bootstrap.current().store
    bucket = BucketUsage("pay", T0)
    bucket.add("r", "egress", 10 ** 15, "alice")
    bucket.add("r", "ingress", 7, "")
    store.put_buckets("1m", [bucket])
    item = next(iter(UsageBucket.query("USAGE#pay")))
    assert item.consumers is None and item.packed_consumers is not None
    assert store.query_buckets("pay", "1m", T0, T0 + 60)[0].consumers == {
        "alice": {"ingress": 0, "egress": 10 ** 15}, ANONYMOUS_CONSUMER: {"ingress": 7, "egress": 0}}


def test_an_item_with_the_consumers_as_a_map_still_reads(aws):
    """Written before the packed form, or holding what it cannot (here a fraction of a byte)."""
    store = bootstrap.current().store
    UsageBucket("USAGE#old", bucket_sk("1m", T0), service="old", level="1m", start=T0, ingress=0, egress=3,
                routes={"r": {"ingress": 0, "egress": 3}}, consumers={"bob": {"ingress": 0, "egress": 3}}).save()
    assert store.query_buckets("old", "1m", T0, T0 + 60)[0].consumers == {"bob": {"ingress": 0, "egress": 3}}
    odd = BucketUsage("odd", T0)
    odd.add("r", "egress", 2.5, "carol")
    store.put_buckets("1m", [odd])
    item = next(iter(UsageBucket.query("USAGE#odd")))
    assert item.packed_consumers is None
    assert bucket_usage(item).consumers == {"carol": {"ingress": 0, "egress": 2.5}}


def test_an_unreadable_packed_value_fails_the_read_clearly(aws):
    store = bootstrap.current().store
    UsageBucket("USAGE#bad", bucket_sk("1m", T0), service="bad", level="1m", start=T0, ingress=0, egress=3,
                routes={"r": {"ingress": 0, "egress": 3}}, packed_consumers=b"\x07garbage").save()
    with pytest.raises(StoreError, match="consumers of USAGE#bad 1m#.* are unreadable"):
        store.query_buckets("bad", "1m", T0, T0 + 60)
