"""Block started / ended notices: recorded by the reconcile in the enforcement state, sent by the
alerts function from that state's stream record, once per (service, period, event), retried while
they fail, for a day at most. (End to end over a moto server: tests/integration/test_enforcement.py.)"""
import pytest

from chalicelib.core.enforcement_ledger import NOTICE_RETRY_SECONDS, EnforcementLedger
from chalicelib.core.errors import MailError
from chalicelib.core.models import EnforcementNotice, enforcement_notice_key
from chalicelib.notify.enforcement_mail import EnforcementNotifier
from tests.fakes.mailer import RecordingMailer

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
NOV1 = DEC1 - 30 * 86400


def notice(event, service="pay", at=DEC1):
    return {"event": event, "at": at, "service": service, "period_start_ts": NOV1, "notify": ["owner@example.com"],
            "usage_bytes": 11_000, "limit_bytes": 10_000, "reject_at": 100, "period_end": "2026-12-01T00:00:00Z",
            "reason": "a new quota period began"}


@pytest.fixture
def notifier(aws):
    mailer = RecordingMailer()
    return EnforcementNotifier(EnforcementLedger(), mailer, "http://meter"), mailer


def status(service, event):
    return EnforcementNotice.get(*enforcement_notice_key(service, NOV1, event)).status


def test_a_notice_offered_by_many_state_records_goes_out_once(notifier):
    sender, mailer = notifier
    assert sender.deliver([notice("block")], DEC1) == ["block:pay"]
    assert sender.deliver([notice("block")], DEC1 + 60) == []
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] pay is blocked: it reached 100% of its quota"]
    assert EnforcementLedger().notice_settled("pay", NOV1, "block")


def test_a_failed_notice_fails_the_record_gives_the_claim_back_and_the_retry_sends_it(notifier):
    sender, mailer = notifier
    mailer.failures_left = 1
    with pytest.raises(MailError, match="the unblock notice of 'pay'"):
        sender.deliver([notice("unblock"), notice("block", service="media")], DEC1)
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] media is blocked: it reached 100% of its quota"]
    assert not EnforcementLedger().notice_settled("pay", NOV1, "unblock")
    assert sender.deliver([notice("unblock"), notice("block", service="media")], DEC1 + 60) == ["unblock:pay"]
    assert mailer.sent[-1]["subject"] == "[Bandwidth Meter] pay is no longer blocked"


def test_a_claim_whose_sender_died_is_taken_over_after_its_timeout(notifier):
    sender, mailer = notifier
    book = EnforcementLedger()
    assert book.claim_notice("pay", NOV1, "block", DEC1) is not None  # an invocation that died here
    assert sender.deliver([notice("block")], DEC1 + 30) == [] and mailer.sent == []
    assert sender.deliver([notice("block")], DEC1 + 120) == ["block:pay"]


def test_a_notice_unsent_for_a_day_is_given_up_and_recorded_so(notifier, caplog):
    sender, mailer = notifier
    assert sender.deliver([notice("unblock")], DEC1 + NOTICE_RETRY_SECONDS + 60) == []
    assert mailer.sent == [] and status("pay", "unblock") == "gave_up"
    assert "gave up the unblock notice of pay" in caplog.text


class StubBook:
    """The reconcile's view of which notices the alerts function settled."""

    def __init__(self, settled):
        self.settled = settled

    def notice_settled(self, service, period_start, event):
        return (service, event) in self.settled


def test_the_reconcile_keeps_unsettled_notices_for_a_day_then_gives_up_and_says_so():
    from chalicelib.enforce.reconcile import ReconcileReport, Reconciler

    reconciler = Reconciler(None, None, None, StubBook({("media", "block")}))
    offered = [notice("unblock", at=DEC1), notice("block", service="media", at=DEC1)]
    report = ReconcileReport()
    assert reconciler._pending_notices(offered, DEC1 + NOTICE_RETRY_SECONDS, report) == offered[:1]
    assert report.errors == []
    assert reconciler._pending_notices(offered, DEC1 + NOTICE_RETRY_SECONDS + 60, report) == []
    assert report.errors == ["gave up telling the owners of 'pay' that its block ended"]
