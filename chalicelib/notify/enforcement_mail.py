"""Owners told when a block starts and when it ends: an email (and the signed webhook), once each.

The alerts function sends them (it alone holds SES rights): the reconcile records the blocks
that started and ended in the enforcement state (``notices``), whose stream record reaches
``AlertProcessor.handle_record`` and then ``deliver`` here. Once per (service, period, "block" |
"unblock"): the notice is claimed in the enforcement ledger with a conditional write before
anything is sent, so the same notice in later state records (or a redelivered record) sends
nothing; a failed delivery gives the claim back and fails the record, so the stream's retry, or
the next minute's state record, sends it. A notice older than a day is given up, and said so.
"""
from __future__ import annotations

import logging
from urllib.parse import quote

from chalicelib.core.enforcement import entry_key
from chalicelib.core.enforcement_ledger import NOTICE_RETRY_SECONDS
from chalicelib.core.models import CONSUMER, SERVICE
from chalicelib.core.errors import MailError
from chalicelib.notify.emails import compose, display_name, human_bytes
from chalicelib.notify.webhook import NotifyError

log = logging.getLogger(__name__)


def _is_consumer(entry: dict) -> bool:
    return entry_key(entry)[0] == CONSUMER


def _name(entry: dict) -> str:
    return entry_key(entry)[1]


def subject(event: str, entry: dict) -> str:
    name = ("consumer " if _is_consumer(entry) else "") + display_name(_name(entry))
    if event == "block":
        return f"[Bandwidth Meter] {name} is blocked: it reached {entry.get('reject_at', 100):g}% of its quota"
    return f"[Bandwidth Meter] {name} is no longer blocked"


def facts(event: str, entry: dict) -> list:
    consumer = _is_consumer(entry)
    rows = [("Consumer" if consumer else "Service", _name(entry))]
    whose = "this consumer's requests (on every service)" if consumer else "requests to this service"
    if event == "block":
        rows += [
            ("Gateway", f"{whose} are answered 429 (Kong request-termination plugin)"),
            ("Usage", f"{human_bytes(entry.get('usage_bytes', 0))} ({entry.get('usage_bytes', 0)} bytes, "
                      f"{entry.get('direction', 'total')})"),
            ("Quota", f"{human_bytes(entry.get('limit_bytes', 0))} ({entry.get('limit_bytes', 0)} bytes) "
                      f"{entry.get('period_kind', '')}, rejecting from {entry.get('reject_at', 100):g}%"),
            ("Blocked until", f"{entry.get('period_end', '?')} (the period's end), unless the limit is raised, "
                              "the quota deleted or its action set to warn"),
        ]
    else:
        rows += [
            ("Gateway", f"{whose} are served again"),
            ("Why", entry.get("reason", "the block is no longer due")),
            ("Blocked period", f"{entry.get('period_start', '?')} to {entry.get('period_end', '?')}"),
        ]
    return rows


def render(event: str, entry: dict, public_url: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a block or unblock notice; every outside value escaped."""
    return compose(subject(event, entry), facts(event, entry), dashboard_link(public_url, entry), "dashboard")


def dashboard_link(public_url: str, entry: dict) -> str:
    kind, name = entry_key(entry)
    return f"{public_url}/dashboard#{kind}={quote(name, safe='')}"


class EnforcementNotifier:
    def __init__(self, ledger, mailer, public_url: str, webhook=None):
        self.ledger = ledger
        self.mailer = mailer
        self.public_url = public_url
        self.webhook = webhook

    def deliver(self, notices: list, now: float) -> list:
        """Send every notice of an enforcement state record that is not sent yet; return the
        "event:service" sent. Every notice is tried; then a MailError names those that failed."""
        sent, failed = [], []
        for notice in notices:
            event = notice.get("event")
            service = notice.get("consumer") if notice.get("kind") == CONSUMER else notice.get("service")
            if event not in ("block", "unblock") or not isinstance(service, str):
                continue
            if now - float(notice.get("at") or now) > NOTICE_RETRY_SECONDS:
                self.give_up(event, notice, now)
                continue
            try:
                if self.notify(event, notice, now):
                    sent.append(f"{event}:{service}")
            except (MailError, NotifyError) as e:
                failed.append(f"the {event} notice of {service!r}: {e}")
        if failed:
            raise MailError("; ".join(failed)[:1000])
        return sent

    def give_up(self, event: str, entry: dict, now: float) -> None:
        """A notice that has failed for a day: recorded as given up (once), and said so."""
        period_start = int(entry.get("period_start_ts") or 0)
        kind, name = entry_key(entry)
        if self.ledger.claim_notice(name, period_start, event, now, status="gave_up", **_kind(kind)) is not None:
            log.error("enforcement: gave up the %s notice of %s after a day of failures", event, _said(kind, name))

    def notify(self, event: str, entry: dict, now: float) -> bool:
        """Tell the owners of ``entry['service']`` that its block started or ended; False when
        that was done before. Raises MailError / NotifyError (claim released) on failure."""
        period_start = int(entry.get("period_start_ts") or 0)
        kind, name = entry_key(entry)
        notice = self.ledger.claim_notice(name, period_start, event, now, **_kind(kind))
        if notice is None:
            return False
        recipients, webhook_url = list(entry.get("notify") or []), entry.get("webhook_url")
        try:
            sent = False
            if recipients and self.mailer is not None:
                self.mailer.send(recipients, *render(event, entry, self.public_url))
                sent = True
            if webhook_url and self.webhook is not None:
                self.webhook.send(webhook_url, self.payload(event, entry))
                sent = True
        except (MailError, NotifyError):
            self.ledger.release(notice)
            raise
        self.ledger.mark_sent(notice, now, "sent" if sent else "no_recipients")
        log.info("enforcement: %s notice for %s (%s)", event, _said(kind, name), "sent" if sent else "no recipients")
        return sent

    def payload(self, event: str, entry: dict) -> dict:
        """The webhook body; a consumer's names it under ``consumer`` (and says ``kind``)."""
        keep = ("service", "consumer", "kind", "usage_bytes", "limit_bytes", "reject_at", "direction", "period_kind",
                "period_start", "period_end", "reason", "message")
        return {"type": event, "subject": subject(event, entry), **{k: entry[k] for k in keep if k in entry},
                "dashboard_url": dashboard_link(self.public_url, entry)}


def _said(kind: str, name: str) -> str:
    return name if kind == SERVICE else f"consumer {name}"


def _kind(kind: str) -> dict:
    """The ledger's ``kind`` argument, given only for a consumer (a service's keys are as they were)."""
    return {} if kind == SERVICE else {"kind": kind}

