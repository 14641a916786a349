"""Owners told when a block starts and when it ends: an email (and the signed webhook), once each.

Once per (service, period, "block" | "unblock"): the notice is claimed in the enforcement book
with a conditional write before anything is sent, so a repeated reconcile sends nothing; a
failed delivery gives the claim back, so the next reconcile sends it.
"""
from __future__ import annotations

import logging
from urllib.parse import quote

from chalicelib.core.errors import MailError
from chalicelib.notify.emails import compose, display_name, human_bytes
from chalicelib.notify.webhook import NotifyError

log = logging.getLogger(__name__)


def subject(event: str, entry: dict) -> str:
    name = display_name(entry["service"])
    if event == "block":
        return f"[Bandwidth Meter] {name} is blocked: it reached {entry.get('reject_at', 100):g}% of its quota"
    return f"[Bandwidth Meter] {name} is no longer blocked"


def facts(event: str, entry: dict) -> list:
    rows = [("Service", entry["service"])]
    if event == "block":
        rows += [
            ("Gateway", "requests to this service are answered 429 (Kong request-termination plugin)"),
            ("Usage", f"{human_bytes(entry.get('usage_bytes', 0))} ({entry.get('usage_bytes', 0)} bytes, "
                      f"{entry.get('direction', 'total')})"),
            ("Quota", f"{human_bytes(entry.get('limit_bytes', 0))} ({entry.get('limit_bytes', 0)} bytes) "
                      f"{entry.get('period_kind', '')}, rejecting from {entry.get('reject_at', 100):g}%"),
            ("Blocked until", f"{entry.get('period_end', '?')} (the period's end), unless the limit is raised, "
                              "the quota deleted or its action set to warn"),
        ]
    else:
        rows += [
            ("Gateway", "requests to this service are served again"),
            ("Why", entry.get("reason", "the block is no longer due")),
            ("Blocked period", f"{entry.get('period_start', '?')} to {entry.get('period_end', '?')}"),
        ]
    return rows


def render(event: str, entry: dict, public_url: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a block or unblock notice; every outside value escaped."""
    link = f"{public_url}/dashboard#service={quote(entry['service'], safe='')}"
    return compose(subject(event, entry), facts(event, entry), link, "dashboard")


class EnforcementNotifier:
    def __init__(self, book, mailer, public_url: str, webhook=None):
        self.book = book
        self.mailer = mailer
        self.public_url = public_url
        self.webhook = webhook

    def notify(self, event: str, entry: dict, now: float) -> bool:
        """Tell the owners of ``entry['service']`` that its block started or ended; False when
        that was done before. Raises MailError / NotifyError (claim released) on failure."""
        period_start = int(entry.get("period_start_ts") or 0)
        notice = self.book.claim_notice(entry["service"], period_start, event, now)
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
            self.book.release(notice)
            raise
        self.book.mark_sent(notice, now, "sent" if sent else "no_recipients")
        log.info("enforcement: %s notice for %s (%s)", event, entry["service"], "sent" if sent else "no recipients")
        return sent

    def payload(self, event: str, entry: dict) -> dict:
        keep = ("service", "usage_bytes", "limit_bytes", "reject_at", "direction", "period_kind", "period_start",
                "period_end", "reason", "message")
        return {"type": event, "subject": subject(event, entry), **{k: entry[k] for k in keep if k in entry},
                "dashboard_url": f"{self.public_url}/dashboard#service={quote(entry['service'], safe='')}"}

