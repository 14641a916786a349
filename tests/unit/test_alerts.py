"""Alert evaluation against moto in-process with a recording mailer."""
import pytest

from chalicelib import bootstrap
from chalicelib.notify.alerts import due_thresholds
from chalicelib.core.errors import MailError
from tests.fakes.mailer import RecordingMailer
from chalicelib.core.models import ServiceUsage
from chalicelib.core.periods import period_at

NOW = 1_795_996_800 + 12 * 3600  # 2026-11-30T12:00Z
GB = 10**9


@pytest.fixture
def alerts(aws):
    mailer = RecordingMailer()
    deps = bootstrap.override(aws, mailer=mailer)
    deps.quotas.put("pay", {"limit_bytes": 100 * GB, "notify": ["ops@example.com"]})
    return deps.alert_processor, mailer


def usage(service, total, when=NOW):
    p = period_at("month", when)
    item = ServiceUsage("SERVICES", service, service=service, first_seen=p.start, last_active=when,
                        period_kind="month", period_anchor=1, period_start=p.start, period_end=p.end,
                        ingress=0, egress=total, total=total, through=when)
    item.save()
    return item


def statuses(service):
    return {a["threshold"]: a["status"] for a in bootstrap.current().ledger.history(service)}


def test_due_thresholds_compare_exactly_at_the_boundary():
    assert due_thresholds(80, 100, [80, 90, 100]) == [80]
    assert due_thresholds(79, 100, [80, 90, 100]) == []
    assert due_thresholds(1000, 100, [100, 90, 80]) == [80, 90, 100]


def test_gradual_growth_sends_each_threshold_once(alerts):
    processor, mailer = alerts
    for total in (50, 81, 85, 91, 99, 100, 130):
        processor.evaluate("pay", NOW, usage("pay", total * GB))
    subjects = [m["subject"] for m in mailer.sent]
    assert subjects == [
        "[Bandwidth Meter] pay reached 80% of its monthly quota",
        "[Bandwidth Meter] pay reached 90% of its monthly quota",
        "[Bandwidth Meter] pay reached 100% of its monthly quota",
    ]
    assert statuses("pay") == {80.0: "sent", 90.0: "sent", 100.0: "sent"}


def test_a_jump_sends_one_email_for_the_highest_and_covers_the_rest(alerts):
    processor, mailer = alerts
    processor.evaluate("pay", NOW, usage("pay", 50 * GB))
    processor.evaluate("pay", NOW, usage("pay", 120 * GB))
    processor.evaluate("pay", NOW, usage("pay", 120 * GB))  # redelivered
    assert len(mailer.sent) == 1 and "100%" in mailer.sent[0]["subject"]
    assert "also covers 80%, 90%" in mailer.sent[0]["text"]
    assert statuses("pay") == {80.0: "covered", 90.0: "covered", 100.0: "sent"}


def test_ses_failure_fails_the_record_and_the_retry_sends_once(alerts):
    processor, mailer = alerts
    mailer.failures_left = 1
    item = usage("pay", 85 * GB)
    with pytest.raises(MailError):
        processor.evaluate("pay", NOW, item)
    assert statuses("pay") == {80.0: "failed"}
    processor.evaluate("pay", NOW, item)
    processor.evaluate("pay", NOW, item)
    assert len(mailer.sent) == 1 and statuses("pay") == {80.0: "sent"}


def test_a_new_period_rearms_every_threshold(alerts):
    processor, mailer = alerts
    processor.evaluate("pay", NOW, usage("pay", 95 * GB))
    next_month = 1_796_083_200 + 3600
    processor.evaluate("pay", next_month, usage("pay", 95 * GB, when=next_month))
    assert [m["subject"].split(" reached ")[1][:3] for m in mailer.sent] == ["90%", "90%"]


def test_lowering_the_quota_sends_the_due_alert_and_raising_it_rearms_nothing(alerts):
    processor, mailer = alerts
    usage("pay", 60 * GB)
    bootstrap.current().quotas.put("pay", {"limit_bytes": 70 * GB, "notify": ["ops@example.com"]})
    assert processor.evaluate("pay", NOW) == 80
    bootstrap.current().quotas.put("pay", {"limit_bytes": 200 * GB, "notify": ["ops@example.com"]})
    bootstrap.current().quotas.put("pay", {"limit_bytes": 70 * GB, "notify": ["ops@example.com"]})
    assert processor.evaluate("pay", NOW) is None
    assert len(mailer.sent) == 1


def test_service_names_are_escaped_in_the_html(alerts):
    processor, mailer = alerts
    name = '<script>alert("x")</script>'
    bootstrap.current().quotas.put(name, {"limit_bytes": 10, "notify": ["ops@example.com"]})
    processor.evaluate(name, NOW, usage(name, 10))
    assert "<script>" not in mailer.sent[0]["html"] and "&lt;script&gt;" in mailer.sent[0]["html"]


def test_one_bad_record_fails_alone(alerts):
    processor, mailer = alerts
    usage("pay", 85 * GB)

    class Record:
        def __init__(self, seq, keys, new_image=None):
            self.sequence_number, self.keys, self.new_image = seq, keys, new_image

    good = Record("2", {"pk": {"S": "QUOTA"}, "sk": {"S": "pay"}})
    bad = Record("1", {"pk": {"S": "SERVICES"}, "sk": {"S": "pay"}},
                 new_image={"pk": {"S": "SERVICES"}, "sk": {"S": "pay"}, "total": {"N": "not-a-number"}})
    result = processor.handle_batch([bad, good], NOW)
    assert result == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert len(mailer.sent) == 1


class RecordingWebhook:
    def __init__(self):
        self.posts, self.failures_left = [], 0

    def send(self, url, payload):
        from chalicelib.notify.webhook import NotifyError
        if self.failures_left:
            self.failures_left -= 1
            raise NotifyError("simulated webhook outage")
        self.posts.append((url, payload))


def test_forecast_warns_once_when_the_trend_reaches_the_limit_before_the_period_ends(alerts):
    processor, mailer = alerts
    bootstrap.current().quotas.put("pay", {"limit_bytes": 100 * GB, "notify": ["ops@example.com"], "forecast": True})
    # 2026-11-10T12:00Z: 9.5 of 30 days gone, 40 GB used -> 100 GB around the 24th
    when = 1_793_491_200 + 9 * 86400 + 43200
    assert processor.evaluate("pay", when, usage("pay", 40 * GB, when=when)) is None
    processor.evaluate("pay", when + 3600, usage("pay", 41 * GB, when=when + 3600))
    (message,) = mailer.sent
    assert message["subject"] == "[Bandwidth Meter] at this rate pay reaches 100% of its monthly quota on the 24th"
    history = bootstrap.current().ledger.history("pay")
    assert history[0]["forecast"] is True and history[0]["forecast_eta"].startswith("2026-11-24")


def test_no_forecast_early_in_the_period_or_when_the_trend_is_slow(alerts):
    processor, mailer = alerts
    bootstrap.current().quotas.put("pay", {"limit_bytes": 100 * GB, "notify": ["ops@example.com"], "forecast": True})
    start = 1_793_491_200
    processor.evaluate("pay", start + 86400, usage("pay", 30 * GB, when=start + 86400))  # day one: too early
    processor.evaluate("pay", start + 20 * 86400, usage("pay", 50 * GB, when=start + 20 * 86400))  # slow
    assert mailer.sent == []


def test_webhook_is_signed_and_a_failed_channel_retries_alone(aws):
    import hashlib
    import hmac
    import json

    from chalicelib.notify.webhook import NotifyError, signature

    mailer, hook = RecordingMailer(), RecordingWebhook()
    deps = bootstrap.override(aws, mailer=mailer, webhook=hook)
    deps.quotas.put("pay", {"limit_bytes": 100, "notify": ["ops@example.com"], "webhook_url": "https://hooks.example/bw"})
    processor = deps.alert_processor
    hook.failures_left = 1
    with pytest.raises(NotifyError):
        processor.evaluate("pay", NOW, usage("pay", 85))
    assert len(mailer.sent) == 1 and statuses("pay") == {80.0: "failed"}
    processor.evaluate("pay", NOW, usage("pay", 85))  # the retry: webhook only, no second email
    assert len(mailer.sent) == 1 and len(hook.posts) == 1 and statuses("pay") == {80.0: "sent"}
    url, payload = hook.posts[0]
    assert url == "https://hooks.example/bw" and payload["type"] == "threshold" and payload["threshold"] == 80
    body = json.dumps(payload, sort_keys=True).encode()
    expected = "sha256=" + hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1700000000", body) == expected
