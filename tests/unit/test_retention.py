"""Charts respect retention: an expired minute is not collected (null), and the auto step never
picks a level whose buckets have expired for part of the range."""
from chalicelib.api.charts import Coverage, build_series, choose_step
from chalicelib.core.store import UsageStore
from chalicelib.core.usage import BucketUsage

DAY = 86400
NOW = 1_796_083_200  # 2026-12-01T00:00Z
KEPT = UsageStore(minute_ttl_days=35).retained_from(NOW)
COVERAGE = Coverage(collection_start=NOW - 400 * DAY, watermark=NOW, retained_from=tuple(sorted(KEPT.items())))


class OneBucketStore:
    """Holds one minute item that TTL has not deleted yet (DynamoDB deletes lazily)."""

    def __init__(self, bucket):
        self.bucket = bucket

    def query_buckets(self, service, level, start, end):
        return [self.bucket] if level == "1m" and start <= self.bucket.start < end else []


def test_minutes_older_than_their_ttl_are_not_collected_even_if_still_stored():
    old = NOW - 36 * DAY
    store = OneBucketStore(BucketUsage("pay", old, {"r": {"ingress": 0, "egress": 5}}))
    chart = build_series(store, COVERAGE, "pay", old, old + 120, "1m", direction="egress")
    assert [p["bytes"] for p in chart["series"][0]["points"]] == [None, None]


def test_minutes_inside_their_ttl_are_collected():
    recent = NOW - DAY
    store = OneBucketStore(BucketUsage("pay", recent, {"r": {"ingress": 0, "egress": 5}}))
    chart = build_series(store, COVERAGE, "pay", recent, recent + 120, "1m", direction="egress")
    assert [p["bytes"] for p in chart["series"][0]["points"]] == [5, 0]


def test_auto_step_skips_levels_expired_for_part_of_the_range():
    # A day, 40 days ago: minutes would fit in points but have expired; 5m rollups are kept.
    start = NOW - 40 * DAY
    assert choose_step(start, start + DAY, "auto", COVERAGE) == "5m"
    assert choose_step(NOW - DAY, NOW, "auto", COVERAGE) == "1m"
    assert choose_step(NOW - 200 * DAY, NOW - 199 * DAY, "auto", COVERAGE) == "1h"


def test_hours_and_days_are_kept_for_ever():
    assert COVERAGE.covers(NOW - 300 * DAY, NOW - 300 * DAY + 3600, "1h")
    assert not COVERAGE.covers(NOW - 300 * DAY, NOW - 300 * DAY + 60, "1m")
