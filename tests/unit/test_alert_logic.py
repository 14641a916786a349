"""The alert rules, specified with in-memory adapters (no DynamoDB): what is sent, covered and recorded."""
import pytest

from chalicelib.core.errors import MailError
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.notify.alerts import CLAIM_TIMEOUT_SECONDS, AlertProcessor
from tests.fakes.ledger import InMemoryAlertLedger, InMemoryQuotaBook
from tests.fakes.mailer import RecordingMailer
from tests.fakes.usage_store import InMemoryUsageStore

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


class Died(BaseException):
    """The process is killed mid-way: nothing after this line runs, nothing catches it."""


class DyingMailer(RecordingMailer):
    def __init__(self, die_before_send: int = 0):
        super().__init__()
        self.die_before_send = die_before_send

    def send(self, to, subject, text, html):
        if self.die_before_send:
            self.die_before_send -= 1
            raise Died()
        return super().send(to, subject, text, html)


def test_lower_thresholds_are_recorded_covered_before_the_email_goes_out(world):
    processor, store, ledger, mailer = world
    seen_at_send = []
    send = mailer.send
    mailer.send = lambda *a: seen_at_send.append(dict(ledger.statuses("pay"))) or send(*a)
    processor.evaluate("pay", NOW, usage(store, 1000))
    assert seen_at_send == [{80.0: "covered", 90.0: "covered", 100.0: "pending"}]


def test_an_older_image_cannot_send_a_lower_threshold_once_a_higher_one_is_claimed(world):
    processor, store, ledger, mailer = world
    processor.evaluate("pay", NOW, usage(store, 1000))
    for key in (80.0, 90.0):  # as if this invocation had read the ledger before the jump was recorded
        del ledger.alerts[("pay", MONTH.start, key)]
    assert processor.evaluate("pay", NOW, usage(store, 920)) is None
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] pay reached 100% of its monthly quota"]


def test_a_failed_email_is_redelivered_by_the_sweep_without_new_traffic(world):
    processor, store, ledger, mailer = world
    mailer.failures_left = 1
    with pytest.raises(MailError):
        processor.evaluate("pay", NOW, usage(store, 850))
    report = processor.sweep(NOW + 1)
    assert report.redelivered == 1 and report.possibly_duplicated == 0
    assert len(mailer.sent) == 1 and ledger.statuses("pay") == {80.0: "sent"} and ledger.due() == []


def test_a_claim_whose_sender_died_is_sent_by_the_sweep_once_it_times_out(world):
    processor, store, ledger, _ = world
    mailer = processor.mailer = DyingMailer(die_before_send=1)
    with pytest.raises(Died):
        processor.evaluate("pay", NOW, usage(store, 850))
    assert processor.sweep(NOW + 30).redelivered == 0  # a live claim: its sender may still be at work
    report = processor.sweep(NOW + CLAIM_TIMEOUT_SECONDS + 1)
    assert report.redelivered == 1 and len(mailer.sent) == 1
    assert "80% of its monthly quota" in mailer.sent[0]["subject"] and ledger.due() == []
    assert processor.sweep(NOW + 3 * CLAIM_TIMEOUT_SECONDS).redelivered == 0


def test_dying_after_ses_accepted_is_the_one_duplicate_and_it_is_counted(world):
    processor, store, ledger, mailer = world
    mark = ledger.mark_delivered

    def die_once(*args):
        ledger.mark_delivered = mark
        raise Died()
    ledger.mark_delivered = die_once
    with pytest.raises(Died):
        processor.evaluate("pay", NOW, usage(store, 850))
    report = processor.sweep(NOW + CLAIM_TIMEOUT_SECONDS + 1)
    assert len(mailer.sent) == 2 and report.possibly_duplicated == 1


def test_a_quota_change_never_alerts_for_a_period_that_has_ended(world):
    processor, store, ledger, mailer = world
    usage(store, 950)  # last month's figure, the service idle since
    next_month = MONTH.end + 3600
    assert processor.evaluate("pay", next_month, quota_changed=True) is None
    assert mailer.sent == [] and ledger.alerts == {}


def test_raising_the_limit_rearms_what_usage_is_now_below_and_lowering_alerts_at_once(world):
    processor, store, ledger, mailer = world
    processor.evaluate("pay", NOW, usage(store, 850))  # 85 % of 1000: the 80 % email
    processor.quotas.quotas["pay"]["limit_bytes"] = 2000  # now 42.5 %
    processor.evaluate("pay", NOW + 60, quota_changed=True)
    assert ledger.statuses("pay") == {} and len(mailer.sent) == 1
    processor.evaluate("pay", NOW + 120, usage(store, 1700))  # 85 % of 2000: 80 % again, once
    processor.quotas.quotas["pay"]["limit_bytes"] = 1700  # lowered: 100 % at once
    processor.evaluate("pay", NOW + 180, quota_changed=True)
    processor.evaluate("pay", NOW + 240, quota_changed=True)
    assert [m["subject"].split(" reached ")[1] for m in mailer.sent] == [
        "80% of its monthly quota", "80% of its monthly quota", "100% of its monthly quota"]


def test_a_rules_change_loads_the_quotas_once_and_resumes_where_its_budget_ran_out():
    store, ledger, mailer = InMemoryUsageStore(), InMemoryAlertLedger(), RecordingMailer()
    quotas = InMemoryQuotaBook(rules=[{"pattern": "svc-[0-9][0-9][0-9]", "limit_bytes": 1000, "notify": ["ops@example.com"]}])
    ticks = iter(range(10_000))
    processor = AlertProcessor(store, ledger, quotas, mailer, public_url="http://dash", rules_budget_seconds=25,
                               monotonic=lambda: next(ticks))
    for i in range(60):
        usage(store, 900, service=f"svc-{i:03d}")
    resume = processor.reevaluate_rules(NOW)
    assert resume is not None and len(mailer.sent) < 60 and quotas.loads == 1
    assert ledger.reevaluation_due() == resume
    while ledger.reevaluation_due() is not None:
        processor.sweep(NOW + 60)
    assert sorted(m["subject"].split()[2] for m in mailer.sent) == [f"svc-{i:03d}" for i in range(60)]
