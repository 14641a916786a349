"""Consumer quota alerts: ConsumerUsage records on the stream (as the collector writes them) judged
against the consumer's quota, exactly once per threshold and period, in a ledger of their own."""
import pytest

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMER, ConsumerUsage, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.notify.alerts import CLAIM_TIMEOUT_SECONDS
from tests.fakes.mailer import RecordingMailer

NOW = 1_795_996_800 + 12 * 3600  # 2026-11-30T12:00Z
GB = 10**9


class Record:
    """A DynamoDB stream record as Chalice hands it over."""

    def __init__(self, seq, item):
        self.sequence_number = seq
        self.keys = {"pk": {"S": item.pk}, "sk": {"S": item.sk}}
        self.new_image = item.serialize()


class RecordingWebhook:
    def __init__(self):
        self.posts = []

    def send(self, url, payload):
        self.posts.append((url, payload))


@pytest.fixture
def world(aws):
    mailer, hook = RecordingMailer(), RecordingWebhook()
    deps = bootstrap.override(aws, mailer=mailer, webhook=hook)
    deps.quotas.put("alice", {"limit_bytes": 100 * GB, "notify": ["billing@example.com"]}, kind=CONSUMER)
    return deps, mailer, hook


def consumer_usage(consumer, total, when=NOW, services=("pay",)):
    p = period_at("month", when)
    item = ConsumerUsage("CONSUMERS", consumer, consumer=consumer, first_seen=p.start, last_active=when,
                         period_kind="month", period_anchor=1, period_start=p.start, period_end=p.end,
                         ingress=0, egress=total, total=total, through=when,
                         services={s: {"ingress": 0, "egress": total // len(services)} for s in services})
    item.save()
    return item


def service_usage(service, total, when=NOW):
    p = period_at("month", when)
    item = ServiceUsage("SERVICES", service, service=service, first_seen=p.start, last_active=when,
                        period_kind="month", period_anchor=1, period_start=p.start, period_end=p.end,
                        ingress=0, egress=total, total=total, through=when)
    item.save()
    return item


def statuses(name, kind=CONSUMER):
    return {a["threshold"]: a["status"] for a in bootstrap.current().ledger.history(name, kind=kind)}


def stream(deps, *items, now=NOW):
    """The records of these items through the alerts function, as one batch."""
    return deps.alert_processor.handle_batch([Record(str(i), item) for i, item in enumerate(items)], now)


def test_a_consumer_alerts_once_per_threshold_from_its_usage_records(world):
    deps, mailer, _ = world
    for total in (50, 81, 85, 91, 91, 100, 130):
        assert stream(deps, consumer_usage("alice", total * GB)) == {"batchItemFailures": []}
    assert [m["subject"] for m in mailer.sent] == [
        "[Bandwidth Meter] consumer alice reached 80% of its monthly quota",
        "[Bandwidth Meter] consumer alice reached 90% of its monthly quota",
        "[Bandwidth Meter] consumer alice reached 100% of its monthly quota",
    ]
    assert "Consumer: alice" in mailer.sent[0]["text"] and "dashboard#consumer=alice" in mailer.sent[0]["text"]
    assert mailer.sent[0]["to"] == ["billing@example.com"]
    assert statuses("alice") == {80.0: "sent", 90.0: "sent", 100.0: "sent"}


def test_a_consumer_and_a_service_of_the_same_name_alert_apart(world):
    deps, mailer, _ = world
    deps.quotas.put("alice", {"limit_bytes": 100 * GB, "notify": ["ops@example.com"]})  # the service alice
    stream(deps, consumer_usage("alice", 85 * GB))
    stream(deps, service_usage("alice", 85 * GB))
    assert sorted(m["subject"] for m in mailer.sent) == [
        "[Bandwidth Meter] alice reached 80% of its monthly quota",
        "[Bandwidth Meter] consumer alice reached 80% of its monthly quota",
    ]
    assert statuses("alice") == {80.0: "sent"} and statuses("alice", kind="service") == {80.0: "sent"}
    stream(deps, consumer_usage("alice", 95 * GB))  # the consumer's 90 % does not touch the service's ledger
    assert statuses("alice", kind="service") == {80.0: "sent"} and statuses("alice") == {80.0: "sent", 90.0: "sent"}


def test_a_failed_consumer_email_is_retried_by_the_sweep_exactly_once(world):
    deps, mailer, _ = world
    mailer.failures_left = 1
    result = stream(deps, consumer_usage("alice", 85 * GB))
    assert result == {"batchItemFailures": [{"itemIdentifier": "0"}]} and statuses("alice") == {80.0: "failed"}
    report = deps.alert_processor.sweep(NOW + 60)
    assert report.redelivered == 1 and statuses("alice") == {80.0: "sent"}
    assert deps.alert_processor.sweep(NOW + 120).redelivered == 0
    stream(deps, consumer_usage("alice", 85 * GB), now=NOW + 180)  # the stream's own retry, late
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer alice reached 80% of its monthly quota"]


def test_a_consumer_claim_whose_sender_died_is_sent_by_the_sweep(world):
    deps, mailer, _ = world
    from chalicelib.core.models import Alert

    p = period_at("month", NOW)
    claim = Alert.record("alice", p.start, 80.0, kind=CONSUMER, period_end=p.end, status="pending",
                         usage_bytes=85 * GB, limit_bytes=100 * GB, recipients=["billing@example.com"],
                         crossed_at=NOW, claimed_at=NOW, direction="total", period_kind="monthly")
    assert deps.ledger.claim(claim, None)
    assert deps.alert_processor.sweep(NOW + 30).redelivered == 0  # a live claim
    assert deps.alert_processor.sweep(NOW + CLAIM_TIMEOUT_SECONDS + 1).redelivered == 1
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer alice reached 80% of its monthly quota"]
    assert statuses("alice") == {80.0: "sent"} and statuses("alice", kind="service") == {}


def test_anonymous_traffic_never_alerts_even_under_a_catch_all_rule(world):
    deps, mailer, _ = world
    deps.quotas.put_rules({"rules": [{"pattern": "*", "limit_bytes": 10, "notify": ["ops@example.com"],
                                      "applies_to": "consumer"}]})
    stream(deps, consumer_usage("(anonymous)", 100), consumer_usage("bob", 100))
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer bob reached 100% of its monthly quota"]
    assert statuses("(anonymous)") == {}


def test_a_service_rule_does_not_alert_a_consumer(world):
    deps, mailer, _ = world
    deps.quotas.put_rules({"rules": [{"pattern": "*", "limit_bytes": 10, "notify": ["ops@example.com"]}]})
    stream(deps, consumer_usage("bob", 100))
    assert mailer.sent == []


def test_lowering_a_consumer_quota_alerts_at_once_from_its_quota_record(world):
    deps, mailer, _ = world
    from chalicelib.core.models import CONSUMER_QUOTA_PK, Quota

    consumer_usage("alice", 60 * GB)
    deps.quotas.put("alice", {"limit_bytes": 70 * GB, "notify": ["billing@example.com"]}, kind=CONSUMER)
    stream(deps, Quota.get(CONSUMER_QUOTA_PK, "alice"))
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer alice reached 80% of its monthly quota"]


def test_a_consumer_forecast_warns_once(world):
    deps, mailer, _ = world
    deps.quotas.put("alice", {"limit_bytes": 100 * GB, "notify": ["billing@example.com"], "forecast": True},
                    kind=CONSUMER)
    when = 1_793_491_200 + 9 * 86400 + 43200  # 2026-11-10T12:00Z: 40 GB -> 100 GB around the 24th
    stream(deps, consumer_usage("alice", 41 * GB, when=when), now=when)
    stream(deps, consumer_usage("alice", 42 * GB, when=when + 60), now=when + 60)
    assert [m["subject"] for m in mailer.sent] == [
        "[Bandwidth Meter] at this rate consumer alice reaches 100% of its monthly quota on the 24th"]


def test_the_webhook_says_it_is_a_consumer(world):
    deps, _, hook = world
    deps.quotas.put("alice", {"limit_bytes": 100, "webhook_url": "https://hooks.example/bw"}, kind=CONSUMER)
    stream(deps, consumer_usage("alice", 90))
    ((url, payload),) = hook.posts
    assert payload["kind"] == "consumer" and payload["consumer"] == "alice" and "service" not in payload
    assert payload["threshold"] == 90 and payload["subject"].startswith("[Bandwidth Meter] consumer alice")
    assert "#consumer=alice" in payload["chart_url"]


def test_a_consumer_judged_in_a_cycle_its_item_does_not_hold_is_summed_from_its_services_buckets(world):
    """The quota changed to a daily one; the collector still holds the month: the day is summed
    from the consumer's entries in its services' buckets."""
    deps, mailer, _ = world
    from chalicelib.core.usage import BucketUsage

    day = period_at("day", NOW)
    buckets = []
    for service, nbytes in (("pay", 60), ("search", 25)):
        bucket = BucketUsage(service, day.start + 3600)
        bucket.add("r", "egress", nbytes, consumer="alice")
        bucket.add("r", "egress", 1000, consumer="bob")
        buckets.append(bucket)
    deps.store.put_buckets("1h", buckets)  # the rollup level the day so far is read from
    deps.quotas.put("alice", {"limit_bytes": 100, "period": "day", "notify": ["billing@example.com"]},
                    kind=CONSUMER)
    consumer_usage("alice", 10_000, services=("pay", "search"))  # the month's figure: not the day's
    from chalicelib.core.models import CONSUMER_QUOTA_PK, Quota

    stream(deps, Quota.get(CONSUMER_QUOTA_PK, "alice"))
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer alice reached 80% of its daily quota"]
    assert "85 bytes" in mailer.sent[0]["text"]


def test_a_new_rule_for_consumers_alerts_an_idle_consumer_from_the_rules_record(world):
    deps, mailer, _ = world
    from chalicelib.core.models import RULES_KEY, QuotaRules

    consumer_usage("bob", 95)  # no traffic since: only the rules record can judge it
    deps.quotas.put_rules({"rules": [{"pattern": "b*", "limit_bytes": 100, "notify": ["ops@example.com"],
                                      "applies_to": "consumer"}]})
    stream(deps, QuotaRules.get(*RULES_KEY))
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] consumer bob reached 90% of its monthly quota"]
    assert statuses("bob") == {80.0: "covered", 90.0: "sent"}


def test_a_consumer_rules_change_that_runs_out_of_budget_is_finished_by_the_sweep(world):
    deps, mailer, _ = world
    from chalicelib.notify.alerts import AlertProcessor

    for name in ("b1", "b2", "b3"):
        consumer_usage(name, 95)
    deps.quotas.put_rules({"rules": [{"pattern": "b*", "limit_bytes": 100, "notify": ["ops@example.com"],
                                      "applies_to": "consumer"}]})
    ticks = iter(range(0, 1000, 30))  # each reading 30 s later: the budget (20 s) runs out at once
    processor = AlertProcessor(deps.store, deps.ledger, deps.quotas, deps.mailer, "http://x",
                               monotonic=lambda: next(ticks))
    assert processor.reevaluate_consumer_rules(NOW) == "b1"
    assert deps.ledger.reevaluation_due(kind=CONSUMER) == "b1" and len(mailer.sent) == 1
    deps.alert_processor.sweep(NOW + 60)
    assert sorted(m["subject"].split()[3] for m in mailer.sent) == ["b1", "b2", "b3"]
    assert deps.ledger.reevaluation_due(kind=CONSUMER) is None
