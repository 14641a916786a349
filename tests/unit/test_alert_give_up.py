"""The sweep gives up an alert it cannot deliver after GIVE_UP_AFTER_SECONDS, records and reports
it, and retries the least recently attempted alerts first, so permanently failing ones never
starve a newer one. The real ledger on moto (its order and its conditional writes are the point)."""
import json

import pytest

from chalicelib.core.alert_ledger import AlertLedger
from chalicelib.core.errors import MailError
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.notify import alerts
from chalicelib.notify.alerts import GIVE_UP_AFTER_SECONDS, SWEEP_LIMIT, AlertProcessor
from tests.fakes.ledger import InMemoryAlertLedger, InMemoryQuotaBook
from tests.fakes.mailer import RecordingMailer
from tests.fakes.usage_store import InMemoryUsageStore

NOW = 1_795_996_800 + 12 * 3600  # 2026-11-30T12:00Z
MONTH = period_at("month", NOW)
BROKEN = "nobody@broken.example"


class PartlyBrokenMailer(RecordingMailer):
    """Refuses every message to BROKEN (a permanent failure); delivers the others."""

    def __init__(self):
        super().__init__()
        self.refused = 0

    def send(self, to, subject, text, html):
        if BROKEN in to:
            self.refused += 1
            raise MailError("simulated: address rejected permanently")
        return super().send(to, subject, text, html)


def usage(store, service, total=1000):
    item = ServiceUsage(SERVICES_PK, service, service=service, first_seen=MONTH.start, last_active=NOW,
                        period_kind="month", period_anchor=1, period_start=MONTH.start, period_end=MONTH.end,
                        ingress=0, egress=total, total=total, through=NOW)
    store.services[service] = item
    return item


def processor_for(quotas):
    store, mailer = InMemoryUsageStore(), PartlyBrokenMailer()
    return AlertProcessor(store, AlertLedger(), InMemoryQuotaBook(quotas), mailer, public_url="http://dash"), store


def fail_first_attempt(processor, store, service, at):
    with pytest.raises(MailError):
        processor.evaluate(service, at, usage(store, service))


def starve(processor, store, failing: int, sweeps: int = 3):
    """``failing`` permanently failing alerts, then a new one whose first attempt failed once:
    the sweep (of SWEEP_LIMIT) in which the new one is delivered, or None."""
    for i in range(failing):
        fail_first_attempt(processor, store, f"a-broken-{i:03d}", NOW)
    processor.mailer.failures_left = 1  # the new alert's first attempt meets a passing outage
    fail_first_attempt(processor, store, "z-new", NOW + 30)
    for sweep in range(1, sweeps + 1):
        report = processor.sweep(NOW + 60 * sweep)
        assert report.redelivered + report.failed <= alerts.SWEEP_LIMIT
        if processor.mailer.sent:
            assert [m["to"] for m in processor.mailer.sent] == [["ops@example.com"]]
            return sweep
    return None


def quotas_for(failing: int) -> dict:
    quotas = {f"a-broken-{i:03d}": {"limit_bytes": 1000, "thresholds": [100], "notify": [BROKEN]}
              for i in range(failing)}
    quotas["z-new"] = {"limit_bytes": 1000, "thresholds": [100], "notify": ["ops@example.com"]}
    return quotas


def test_a_new_alert_is_delivered_within_two_sweeps_behind_101_failing_ones():
    # The sweep's rules with the in-memory ledger (ordered as the real one): fast at full scale.
    failing = SWEEP_LIMIT + 1
    store, mailer = InMemoryUsageStore(), PartlyBrokenMailer()
    processor = AlertProcessor(store, InMemoryAlertLedger(), InMemoryQuotaBook(quotas_for(failing)), mailer,
                               public_url="http://dash")
    assert starve(processor, store, failing) in (1, 2)


def test_the_ledger_hands_the_sweep_the_least_recently_attempted_alerts(aws, monkeypatch):
    # The same on DynamoDB, with a smaller sweep: markers sort by period and service, so the
    # first SWEEP_LIMIT of them were the same failing alerts every minute.
    monkeypatch.setattr(alerts, "SWEEP_LIMIT", 3)
    processor, store = processor_for(quotas_for(4))
    assert starve(processor, store, 4) in (1, 2)
    history = processor.ledger.history("z-new")
    assert history[0]["status"] == "sent" and history[0]["attempts"] == 2


def test_a_permanently_failing_alert_is_given_up_after_the_bound_and_never_tried_again(aws, caplog):
    processor, store = processor_for({"pay": {"limit_bytes": 1000, "thresholds": [100], "notify": [BROKEN]}})
    fail_first_attempt(processor, store, "pay", NOW)
    report = processor.sweep(NOW + GIVE_UP_AFTER_SECONDS - 60)
    assert report.failed == 1 and report.given_up == []  # still inside the bound: retried
    tried = processor.mailer.refused

    report = processor.sweep(NOW + GIVE_UP_AFTER_SECONDS + 60)
    assert report.given_up == ["pay 100%"] and report.failed == 0
    assert processor.mailer.refused == tried  # not sent again
    assert processor.ledger.due() == []
    entry = processor.ledger.history("pay")[0]
    assert entry["status"] == "given_up" and entry["attempts"] == 2
    assert entry["error"].startswith("given up after 2 attempts in 24 h")
    assert "address rejected permanently" in entry["error"]
    assert any(r.levelname == "ERROR" and "given up" in r.getMessage() for r in caplog.records)

    # neither the sweep nor new usage of the service tries it again
    assert processor.sweep(NOW + GIVE_UP_AFTER_SECONDS + 120).given_up == []
    processor.evaluate("pay", NOW + GIVE_UP_AFTER_SECONDS + 180, usage(store, "pay", 1200))
    assert processor.mailer.refused == tried


def test_retries_on_new_usage_keep_the_first_attempts_time(aws):
    processor, store = processor_for({"pay": {"limit_bytes": 1000, "thresholds": [100], "notify": [BROKEN]}})
    fail_first_attempt(processor, store, "pay", NOW)
    for hour in (6, 12, 24):  # the stream retries on new usage records; the clock is not reset
        fail_first_attempt(processor, store, "pay", NOW + 3600 * hour - 30)
    report = processor.sweep(NOW + GIVE_UP_AFTER_SECONDS + 1)
    assert report.given_up == ["pay 100%"]
    assert processor.ledger.history("pay")[0]["first_claimed_at"] == "2026-11-30T12:00:00Z"


def test_the_alert_history_api_shows_a_given_up_alert(aws):
    from chalice.test import Client

    from chalicelib import bootstrap
    processor, store = processor_for({"pay": {"limit_bytes": 1000, "thresholds": [100], "notify": [BROKEN]}})
    fail_first_attempt(processor, store, "pay", NOW)
    processor.sweep(NOW + GIVE_UP_AFTER_SECONDS)
    bootstrap.current().store.put_services([usage(store, "pay")])
    from app import app

    with Client(app) as client:
        response = client.http.get("/v1/services/pay/alerts")
    assert response.status_code == 200
    alerts = json.loads(response.body)["alerts"]
    assert [(a["threshold"], a["status"]) for a in alerts] == [(100.0, "given_up")]
    assert "given up after" in alerts[0]["error"]
