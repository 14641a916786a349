"""Which stored level each point of a chart comes from (chalicelib/api/charts.py, ``slots``), on
the in-memory usage store (tests/fakes/usage_store.py; tests/integration/
test_usage_store_contract.py holds it to UsageStore): a whole bucket is its rollup, even one cut
by the collection start; the bucket still filling is summed from finer levels up to the
watermark, never from a rollup, and nothing before collection began is shown."""
from chalicelib.api.charts import Coverage, build_series, slots
from chalicelib.core.usage import BucketUsage
from tests.fakes.usage_store import InMemoryUsageStore

T0 = 1_764_547_200  # 2025-12-01T00:00:00Z


def egress(service, start, nbytes):
    bucket = BucketUsage(service, start)
    bucket.add("r", "egress", nbytes)
    return bucket


def stored():
    store = InMemoryUsageStore()
    # 15-minute rollups; the one at T0+2700 holds a value no run would leave, to show it is not read
    store.put_buckets("15m", [egress("pay", T0, 100), egress("pay", T0 + 900, 200), egress("pay", T0 + 1800, 300),
                              egress("pay", T0 + 2700, 999)])
    store.put_buckets("5m", [egress("pay", T0 + 2700, 40)])
    store.put_buckets("1m", [egress("pay", T0 + 2700, 7), egress("pay", T0 + 2760, 8), egress("pay", T0 + 2820, 1000)])
    return store


def test_whole_buckets_are_rollups_and_the_filling_one_is_summed_from_minutes_up_to_the_watermark():
    coverage = Coverage(collection_start=T0 + 300, watermark=T0 + 2820)
    found = slots(stored(), coverage, "pay", T0, T0 + 3600, "15m")
    assert [(s.time, s.usage.egress if s.usage else None, s.partial) for s in found] == [
        (T0, 100, True),  # cut by the collection start, but complete: its rollup
        (T0 + 900, 200, False),
        (T0 + 1800, 300, False),
        (T0 + 2700, 15, True),  # still filling: the minutes before the watermark, not the rollup
    ]


def test_the_filling_bucket_reads_the_coarsest_whole_rollups_inside_it():
    coverage = Coverage(collection_start=T0, watermark=T0 + 3000)  # 5 minutes final in the last quarter
    found = slots(stored(), coverage, "pay", T0 + 2700, T0 + 3600, "15m")
    assert [(s.usage.egress, s.partial) for s in found] == [(40, True)]  # the 5m rollup, not its minutes


def test_points_before_collection_began_are_null_and_the_total_counts_what_was_collected():
    coverage = Coverage(collection_start=T0 + 900, watermark=T0 + 2820)
    chart = build_series(stored(), coverage, "pay", T0, T0 + 3600, "15m", direction="egress")
    (series,) = chart["series"]
    assert [p["bytes"] for p in series["points"]] == [None, 200, 300, 15]
    assert series["total_bytes"] == 515
