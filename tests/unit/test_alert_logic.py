"""The alert rules, specified with in-memory adapters (no DynamoDB): what is sent, covered and recorded."""
import pytest

from chalicelib.core.errors import MailError
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.notify.alerts import AlertProcessor
from tests.fakes.ledger import InMemoryAlertLedger, InMemoryQuotaBook, InMemoryUsageStore
from tests.fakes.mailer import RecordingMailer

NOW = 1_795_996_800 + 12 * 3600  # 2026-11-30T12:00Z
MONTH = period_at("month", NOW)


@pytest.fixture
def world():
    store, ledger, mailer = InMemoryUsageStore(), InMemoryAlertLedger(), RecordingMailer()
    quotas = InMemoryQuotaBook({"pay": {"limit_bytes": 1000, "notify": ["ops@example.com"]}})
    processor = AlertProcessor(store, ledger, quotas, mailer, public_url="http://dash")
    return processor, store, ledger, mailer


def usage(store, total, service="pay", through=NOW):
    item = ServiceUsage(SERVICES_PK, service, service=service, first_seen=MONTH.start, last_active=through,
                        period_kind="month", period_anchor=1, period_start=MONTH.start, period_end=MONTH.end,
                        ingress=0, egress=total, total=total, through=through)
    store.services[service] = item
    return item


def test_below_every_threshold_nothing_is_sent_or_recorded(world):
    processor, store, ledger, mailer = world
    assert processor.evaluate("pay", NOW, usage(store, 799)) is None
    assert mailer.sent == [] and ledger.alerts == {}


def test_a_jump_past_two_thresholds_sends_one_email_for_the_higher_and_covers_the_lower(world):
    processor, store, ledger, mailer = world
    assert processor.evaluate("pay", NOW, usage(store, 950)) == 90
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] pay reached 90% of its monthly quota"]
    assert ledger.statuses("pay") == {80.0: "covered", 90.0: "sent"}


def test_the_same_usage_delivered_again_sends_nothing_more(world):
    processor, store, ledger, mailer = world
    processor.evaluate("pay", NOW, usage(store, 850))
    processor.evaluate("pay", NOW + 60, usage(store, 850))
    assert len(mailer.sent) == 1


def test_a_refused_email_is_marked_failed_and_the_retry_sends_it_once(world):
    processor, store, ledger, mailer = world
    mailer.failures_left = 1
    with pytest.raises(MailError):
        processor.evaluate("pay", NOW, usage(store, 1000))
    assert ledger.statuses("pay")[100.0] == "failed" and mailer.sent == []
    processor.evaluate("pay", NOW + 60, usage(store, 1000))
    assert ledger.statuses("pay")[100.0] == "sent" and len(mailer.sent) == 1


def test_a_service_without_a_quota_is_never_judged(world):
    processor, store, ledger, mailer = world
    assert processor.evaluate("other", NOW, usage(store, 10**15, service="other")) is None
    assert ledger.alerts == {}
