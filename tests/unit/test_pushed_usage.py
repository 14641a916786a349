"""Pushed events counted once (chalicelib/core/pushed.py, events.py): dedupe by (source, id),
refusals, every level kept with ADD, crash between steps, and the period usage that includes
them. moto in-process."""
import pytest

from chalicelib.core import events as ev
from chalicelib.core import pushed as pushed_module
from chalicelib.core.models import PUSH_PENDING_PK, EventMarker, PushBatch, ServiceUsage, event_marker_key
from chalicelib.core.periods import period_at
from chalicelib.core.pushed import PushedUsage, deltas_of, groups_of
from chalicelib.core.quotas import EffectiveQuota
from chalicelib.core.store import UsageStore
from chalicelib.core.timeutil import DAY, parse_time
from chalicelib.core.usage import period_usage

NOW = parse_time("2026-12-04T12:30:20Z")


def event(i=1, service="cdn", nbytes=100, time="2026-12-04T12:10:30Z", source="/logs", direction="egress", **data):
    return {"specversion": "1.0", "id": str(i), "source": source, "type": ev.EVENT_TYPE, "time": time,
            "data": {"service": service, "direction": direction, "bytes": nbytes, **data}}


def judged(*raws):
    return [ev.judge(r, NOW, 35) for r in raws]


@pytest.fixture
def store(aws):
    return UsageStore(minute_ttl_days=35)


def minute_total(store, service, minute_iso, level="1m"):
    at = parse_time(minute_iso)
    return sum(b.total for b in store.pushed.buckets(service, level, at, at + 60 if level == "1m" else at + 1))


# -- judging -------------------------------------------------------------------------------
def test_a_valid_event_becomes_a_usage_event_in_its_minute():
    [e] = judged(event(route="/v1/play", consumer="acme"))
    assert (e.service, e.direction, e.bytes, e.route, e.consumer) == ("cdn", "egress", 100, "/v1/play", "acme")
    assert e.minute == parse_time("2026-12-04T12:10:00Z")


def test_an_event_without_route_or_consumer_counts_as_no_route_and_anonymous():
    [e] = judged(event())
    assert (e.route, e.consumer) == (ev.NO_ROUTE, "(anonymous)")


@pytest.mark.parametrize("raw, reason", [
    (event(nbytes=-1), "data/bytes"),
    (event(nbytes=1.5), "data/bytes"),
    (event(direction="sideways"), "data/direction"),
    ({**event(), "specversion": "0.3"}, "specversion"),
    ({**event(), "type": "com.example.other"}, "type"),
    ({k: v for k, v in event().items() if k != "id"}, "'id' is a required property"),
    ({k: v for k, v in event().items() if k != "time"}, "'time' is a required property"),
    (event(time="yesterday"), "time: 'yesterday' is not an RFC 3339 time"),
    (event(time="2026-12-04T12:40:00Z"), "in the future"),
    (event(time="2026-10-29T12:00:00Z"), "older than the 35 days minutes are kept"),
    ("not an object", "must be a JSON object"),
])
def test_a_bad_event_is_refused_with_its_reason(raw, reason):
    [refusal] = judged(raw)
    assert isinstance(refusal, ev.Refusal) and reason in refusal.reason


def test_an_event_within_the_retention_is_accepted_however_late():
    [e] = judged(event(time="2026-10-31T12:00:00Z"))  # 34 days ago
    assert isinstance(e, ev.UsageEvent)


def test_a_repeated_identity_within_one_request_is_marked_at_its_later_places():
    items = judged(event(1), event(2), event(1), event(1, source="/other"))
    assert ev.repeats(items) == [False, False, True, False]


def test_a_batch_must_be_an_array_and_an_array_must_say_it_is_a_batch():
    assert ev.split_mode("application/cloudevents-batch+json; charset=utf-8", [1, 2]) == ([1, 2], True)
    assert ev.split_mode("application/cloudevents+json", {"a": 1}) == ([{"a": 1}], False)
    with pytest.raises(ValueError, match="must be a JSON array"):
        ev.split_mode("application/cloudevents-batch+json", {"a": 1})
    with pytest.raises(ValueError, match="cloudevents-batch"):
        ev.split_mode("application/json", [])


# -- counting once -------------------------------------------------------------------------
def test_accepted_bytes_land_in_their_minute_and_every_rollup(store):
    events = judged(event(1, nbytes=100), event(2, nbytes=50, direction="ingress", route="/a", consumer="acme"))
    outcome = store.pushed.push(events, NOW)
    assert outcome.statuses == ["accepted", "accepted"]
    for level, start in (("1m", "2026-12-04T12:10:00Z"), ("5m", "2026-12-04T12:10:00Z"),
                         ("15m", "2026-12-04T12:00:00Z"), ("1h", "2026-12-04T12:00:00Z"),
                         ("1d", "2026-12-04T00:00:00Z")):
        [bucket] = store.pushed.buckets("cdn", level, parse_time(start), parse_time(start) + 1)
        assert (bucket.ingress, bucket.egress) == (50, 100), level
        assert bucket.routes == {"/a": {"ingress": 50, "egress": 0}, ev.NO_ROUTE: {"ingress": 0, "egress": 100}}
        assert bucket.consumers == {"acme": {"ingress": 50, "egress": 0}, "(anonymous)": {"ingress": 0, "egress": 100}}


def test_a_replayed_event_is_a_duplicate_and_counts_once(store):
    store.pushed.push(judged(event(1, nbytes=100)), NOW)
    again = store.pushed.push(judged(event(1, nbytes=100), event(2, nbytes=7)), NOW + 3600)
    assert again.statuses == ["duplicate", "accepted"]
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 107


def test_the_same_id_from_another_source_is_another_event(store):
    outcome = store.pushed.push(judged(event(1, source="/a"), event(1, source="/b")), NOW)
    assert outcome.statuses == ["accepted", "accepted"]
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 200


def test_a_marker_outlives_the_retention_counted_from_the_later_of_now_and_the_event(store):
    [e] = judged(event(1))
    assert store.pushed.marker_expiry(e, NOW).timestamp() == NOW + 36 * DAY
    store.pushed.push([e], NOW)
    marker = EventMarker.get(*event_marker_key(e.digest))
    assert marker.expires_at.timestamp() >= NOW + 35 * DAY


def test_adding_to_existing_buckets_adds(store):
    store.pushed.push(judged(event(1, nbytes=100, route="/a")), NOW)
    store.pushed.push(judged(event(2, nbytes=30, route="/a"), event(3, nbytes=5, route="/b")), NOW)
    [bucket] = store.pushed.buckets("cdn", "1h", parse_time("2026-12-04T12:00:00Z"), parse_time("2026-12-04T13:00:00Z"))
    assert bucket.routes == {"/a": {"ingress": 0, "egress": 130}, "/b": {"ingress": 0, "egress": 5}}


def test_a_large_batch_is_applied_in_several_transactions_and_counts_exactly(store):
    # 7 services x 13 minutes: 91 minute items and their rollups, more than one transaction holds
    raws = [event(i, service=f"svc-{i % 7}", nbytes=i, route=f"/r{i % 90}",
                  time=f"2026-12-04T11:{i % 13:02d}:00Z") for i in range(1000)]
    outcome = store.pushed.push(judged(*raws), NOW)
    assert outcome.statuses == ["accepted"] * 1000 and outcome.transactions > 1
    day = parse_time("2026-12-04T00:00:00Z")
    assert sum(b.total for s in range(7) for b in store.pushed.buckets(f"svc-{s}", "1d", day, day + 1)) == sum(range(1000))
    assert store.pushed.push(judged(*raws), NOW).statuses == ["duplicate"] * 1000
    assert sum(b.total for s in range(7) for b in store.pushed.buckets(f"svc-{s}", "1d", day, day + 1)) == sum(range(1000))


def test_groups_are_the_same_for_the_same_events_and_cut_wide_items():
    events = judged(*[event(i, route=f"/r{i}") for i in range(130)])
    first, second = groups_of(deltas_of(events)), groups_of(deltas_of(list(events)))
    assert first == second
    minute_pieces = [p for g in first for p in g if p[0][1] == "1m"]
    assert len(minute_pieces) == 4 and sum(p[2] for p in minute_pieces) == sum(e.bytes for e in events)


def test_an_update_expression_stays_under_dynamodbs_4_kb_with_the_longest_map_names():
    from chalicelib.core.pushed import MAP_ENTRIES_PER_UPDATE, _update

    entries = [(("consumers_out", f"c{i}"), 1) for i in range(MAP_ENTRIES_PER_UPDATE)]
    update = _update("t", ("s" * 200, "15m", NOW), 1, 2, entries)
    assert len(update["UpdateExpression"]) < 4096


# -- a crash between steps -----------------------------------------------------------------
def test_a_request_that_died_after_claiming_is_finished_by_the_retry_and_counts_once(store, monkeypatch):
    events = judged(event(1, nbytes=100), event(2, nbytes=20))
    calls = {"n": 0}
    real = PushedUsage._apply_group

    def dies_on_the_second_group(self, batch, number, group, now):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the Lambda timed out")
        return real(self, batch, number, group, now)

    monkeypatch.setattr(PushedUsage, "_apply_group", dies_on_the_second_group)
    monkeypatch.setattr(pushed_module, "GROUP_ITEMS", 3)  # several groups for one minute's five levels
    with pytest.raises(RuntimeError):
        store.pushed.push(events, NOW)
    assert len(list(PushBatch.query(PUSH_PENDING_PK))) == 1  # the record stays: the batch is unfinished
    monkeypatch.setattr(PushedUsage, "_apply_group", real)
    # The client retries later: its events are the dead batch's, which the retry finishes.
    retry = store.pushed.push(events, NOW + 600)
    assert retry.statuses == ["duplicate", "duplicate"]
    for level, start in (("1m", "2026-12-04T12:10:00Z"), ("1d", "2026-12-04T00:00:00Z")):
        at = parse_time(start)
        assert sum(b.total for b in store.pushed.buckets("cdn", level, at, at + 1)) == 120, level
    assert list(PushBatch.query(PUSH_PENDING_PK)) == []
    # ...and a third try changes nothing
    store.pushed.push(events, NOW + 700)
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 120


def test_a_dead_batch_nobody_retries_is_finished_by_the_next_push(store, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(PushedUsage, "apply", lambda self, *a: (_ for _ in ()).throw(RuntimeError("died")))
        with pytest.raises(RuntimeError):
            store.pushed.push(judged(event(1, nbytes=100)), NOW)
    store.pushed.push(judged(event(2, nbytes=1, service="other")), NOW + 60)  # too soon: not stale yet
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 0
    store.pushed.push(judged(event(3, nbytes=1, service="other")), NOW + pushed_module.STALE_SECONDS + 61)
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 100


# -- period usage --------------------------------------------------------------------------
def test_period_usage_adds_pushed_bytes_of_the_period_only(store):
    store.pushed.push(judged(event(1, nbytes=100), event(2, nbytes=40, direction="ingress"),
                             event(3, nbytes=9, time="2026-11-30T23:59:00Z")), NOW)
    item = store.get_service("cdn")
    assert item is not None and item.pushed_at == NOW  # created for a service only ever pushed
    quota = EffectiveQuota(limit_bytes=1000, period="month", anchor_day=1, direction="total", thresholds=(80,),
                           notify=(), source="own")
    usage = period_usage(store, item, quota, NOW)
    assert usage.period == period_at("month", NOW) and (usage.ingress, usage.egress) == (40, 100)
    assert period_usage(store, item, quota, parse_time("2026-11-15T00:00:00Z")).total == 9


def test_pushing_to_a_scraped_service_keeps_its_collected_figures(store):
    item = ServiceUsage.first_seen_at("cdn", NOW - 3600, NOW - 60)
    item.ingress, item.egress, item.total = 5, 6, 11
    store.put_services([item])
    store.pushed.push(judged(event(1, nbytes=100)), NOW)
    stored = store.get_service("cdn")
    assert (int(stored.ingress), int(stored.egress), int(stored.first_seen)) == (5, 6, NOW - 3600)
    assert stored.pushed_at == NOW


# -- alerts --------------------------------------------------------------------------------
class StreamRecord:
    def __init__(self, seq, item):
        self.sequence_number = seq
        self.keys = {"pk": {"S": item.pk}, "sk": {"S": item.sk}}
        self.new_image = item.serialize()


def test_a_pushed_burst_crosses_the_quota_and_alerts_once(aws):
    from chalicelib import bootstrap
    from tests.fakes.mailer import RecordingMailer

    mailer = RecordingMailer()
    deps = bootstrap.override(aws, mailer=mailer, clock=lambda: NOW)
    deps.quotas.put("cdn", {"limit_bytes": 1000, "notify": ["ops@example.com"]})
    burst = judged(*[event(i, nbytes=300) for i in range(4)])  # 1,200 B: past 80, 90 and 100 %
    for attempt in range(3):  # the burst, then two replays: each touches the service's item
        deps.store.pushed.push(burst, NOW + attempt)
        item = ServiceUsage.get("SERVICES", "cdn")
        assert deps.alert_processor.handle_batch([StreamRecord(str(attempt), item)], NOW + attempt) == {
            "batchItemFailures": []}
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] cdn reached 100% of its monthly quota"]
    assert "1.2 kB" in mailer.sent[0]["text"] or "1200" in mailer.sent[0]["text"] or "1,200" in mailer.sent[0]["text"]


def test_a_service_first_met_by_a_push_is_counted_by_the_collector_from_its_watermark(store):
    """The collector skips a service's minutes before ``through``: an item made by a push must not
    claim minutes the collector has yet to count (the pushed event may be newer than its watermark)."""
    store.acquire_lease("run", NOW, 60)
    store.update_state("run", watermark=NOW - 300, collection_start=NOW - 3600, running_since=None)
    store.pushed.push(judged(event(1, time="2026-12-04T12:29:00Z")), NOW)
    assert int(store.get_service("cdn").through) == NOW - 300


def test_the_oldest_unfinished_batch_is_found_among_newer_ones(store, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(PushedUsage, "apply", lambda self, *a: (_ for _ in ()).throw(RuntimeError("died")))
        for i, at in enumerate((NOW, NOW + 200, NOW + 210, NOW + 220, NOW + 230)):
            with pytest.raises(RuntimeError):
                store.pushed.push(judged(event(i, nbytes=10 ** i)), at)
    assert store.pushed.resume_stale(NOW + 250) == 1  # only the first is stale yet
    assert minute_total(store, "cdn", "2026-12-04T12:10:00Z") == 1


def test_period_usage_looks_for_pushed_bytes_only_where_some_were_pushed(store, monkeypatch):
    quota = EffectiveQuota(source="none")
    store.pushed.push(judged(event(1, nbytes=100, service="pushed")), NOW)
    scraped_only = ServiceUsage.first_seen_at("scraped", NOW - 3600, NOW - 60)
    store.put_services([scraped_only])
    queries = []
    real = PushedUsage.period_bytes
    monkeypatch.setattr(PushedUsage, "period_bytes", lambda self, s, a, b: queries.append(s) or real(self, s, a, b))
    assert period_usage(store, store.get_service("scraped"), quota, NOW).total == 0
    # The collector rewrote the pushed service's item without pushed_at: the list still knows it
    rewritten = store.get_service("pushed")
    rewritten.pushed_at = None
    assert period_usage(store, rewritten, quota, NOW).total == 100
    assert queries == ["pushed"]
