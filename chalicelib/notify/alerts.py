"""The alerts function: usage or quota changes on the stream -> one email per threshold.

Exactly once per (service, period, threshold), although streams deliver at
least once: the alert is claimed with a conditional write before sending,
marked sent after, and marked failed (claimable again) if SES refuses, in which
case the record fails so Lambda retries it. When one change crosses several
thresholds, one email names the highest; the lower ones are recorded as covered.
"""
from __future__ import annotations

import logging
from typing import Iterable, List, Optional

from chalicelib.core.errors import MailError
from chalicelib.core.models import FORECAST, QUOTA_PK, RULES_KEY, SERVICES_PK, Alert, ServiceUsage
from chalicelib.core.periods import Period
from chalicelib.core.quotas import EffectiveQuota
from chalicelib.core.usage import PeriodUsage, period_usage
from chalicelib.notify import emails
from chalicelib.notify.webhook import NotifyError

log = logging.getLogger(__name__)

CLAIM_TIMEOUT_SECONDS = 300  # a claim older than this (its sender died) may be taken again


FORECAST_MIN_ELAPSED = 0.1  # judge a trend only after a tenth of the period


def due_thresholds(usage: int, limit: int, thresholds: Iterable[float]) -> List[float]:
    """Thresholds (percent) that ``usage`` has reached, lowest first."""
    return sorted(t for t in thresholds if usage * 100 >= t * limit)


def forecast_eta(usage: int, limit: int, period: Period, at: int) -> Optional[int]:
    """When the period's average rate so far reaches the limit, if that is before the period ends."""
    elapsed = at - period.start
    if usage >= limit or usage <= 0 or elapsed < FORECAST_MIN_ELAPSED * (period.end - period.start):
        return None
    eta = period.start + int(limit * elapsed / usage)
    return eta if eta < period.end else None


class AlertProcessor:
    def __init__(self, store, ledger, quotas, mailer, public_url: str, webhook=None):
        self.store = store
        self.ledger = ledger
        self.quotas = quotas
        self.mailer = mailer
        self.webhook = webhook
        self.public_url = public_url

    # -- stream entry point ----------------------------------------------------------------
    def handle_batch(self, event, now: float) -> dict:
        """Process records one by one; report the failed ones (ReportBatchItemFailures)."""
        failures = []
        for record in event:
            try:
                self.handle_record(record, now)
            except Exception:  # one bad record fails alone; it is reported, never swallowed
                log.exception("alerts: record %s failed", getattr(record, "sequence_number", "?"))
                failures.append({"itemIdentifier": record.sequence_number})
        return {"batchItemFailures": failures}

    def handle_record(self, record, now: float) -> None:
        keys = record.keys or {}
        pk = keys.get("pk", {}).get("S", "")
        sk = keys.get("sk", {}).get("S", "")
        if pk == SERVICES_PK and record.new_image:
            self.evaluate(sk, now, ServiceUsage.from_raw_data(record.new_image))
        elif pk == QUOTA_PK:
            self.evaluate(sk, now)
        elif (pk, sk) == RULES_KEY:
            for item in self.store.list_services():
                self.evaluate(item.service, now, item)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, service: str, now: float, usage_item: Optional[ServiceUsage] = None) -> Optional[float]:
        """Send the due alert for a service, if any; return the threshold notified."""
        quota = self.quotas.quota_for(service)
        if quota.limit_bytes is None:
            return None
        item = usage_item or self.store.get_service(service)
        if item is None:
            return None
        judged = self._usage(item, quota, now)
        period, usage = judged.period, judged.of(quota.direction)
        crossed_at = int(item.through) if item.through is not None else int(now)
        existing = self.ledger.for_period(service, period.start)
        sent = None
        due = due_thresholds(usage, quota.limit_bytes, quota.thresholds)
        pending = [t for t in due if self._claimable(existing.get(t), now)]
        if pending:
            highest = pending[-1]
            alert = emails.ThresholdAlert(service, highest, usage, quota.limit_bytes, quota.direction,
                                          period.adjective, period.start, period.end, crossed_at,
                                          covered=tuple(pending[:-1]),
                                          reject_at=quota.reject_at if quota.rejects else None)
            if self._notify(alert, quota, existing.get(highest), now):
                sent = highest
                for lower in pending[:-1]:
                    self._record_covered(alert, quota, lower, now)
        if quota.forecast and self._claimable(existing.get(FORECAST), now):
            eta = forecast_eta(usage, quota.limit_bytes, period, crossed_at)
            if eta is not None:
                alert = emails.ThresholdAlert(service, 100, usage, quota.limit_bytes, quota.direction,
                                              period.adjective, period.start, period.end, crossed_at,
                                              forecast_eta=eta)
                self._notify(alert, quota, existing.get(FORECAST), now)
        return sent

    def _notify(self, alert, quota: EffectiveQuota, existing: Optional[Alert], now: float) -> bool:
        claim = self._claim(alert, quota, existing, now)
        if claim is None:
            return False  # another invocation holds it
        self._send(claim, alert, quota, now)
        return True

    def _usage(self, item: ServiceUsage, quota: EffectiveQuota, now: float) -> PeriodUsage:
        """The usage to judge: the stream image's own period when it counts the quota's cycle
        (exact even if the record arrives after the period ended), else the period of now."""
        own_period = item.counts_cycle(quota.period, quota.anchor_day) and int(item.period_end) > 0
        return period_usage(self.store, item, quota, int(item.period_start) if own_period else now)

    @staticmethod
    def _claimable(alert: Optional[Alert], now: float) -> bool:
        if alert is None or alert.status == "failed":
            return True
        return alert.status == "pending" and (alert.claimed_at or 0) < now - CLAIM_TIMEOUT_SECONDS

    def _new_alert(self, alert: emails.ThresholdAlert, quota: EffectiveQuota, threshold: float,
                   status: str, now: float) -> Alert:
        return Alert.record(alert.service, alert.period_start, threshold, alert.forecast_eta is not None,
                            period_end=alert.period_end, status=status, usage_bytes=alert.usage_bytes,
                            limit_bytes=alert.limit_bytes, recipients=list(quota.notify),
                            crossed_at=alert.crossed_at, claimed_at=now, forecast_eta=alert.forecast_eta)

    def _claim(self, alert, quota, existing: Optional[Alert], now: float) -> Optional[Alert]:
        claim = self._new_alert(alert, quota, alert.threshold, "pending", now)
        if existing is not None:
            claim.delivered = list(existing.delivered or [])  # channels a failed attempt already served
        return claim if self.ledger.claim(claim, existing) else None

    def _send(self, claim: Alert, alert, quota: EffectiveQuota, now: float) -> None:
        """Deliver on every configured channel not yet served; a failure marks the alert failed
        (claimable again) and fails the record, so the retry serves only what is left."""
        if quota.webhook_url and self.webhook is None:
            log.warning("alerts: %s has a webhook_url but WEBHOOK_SECRET is not set; webhook skipped", alert.service)
        channels = [c for c, on in (("email", bool(quota.notify)),
                                    ("webhook", bool(quota.webhook_url and self.webhook))) if on]
        if not channels:
            self.ledger.mark_sent(claim, now, status="no_recipients")
            log.warning("alerts: %s reached %g%% but its quota names no recipients", alert.service, alert.threshold)
            return
        for channel in channels:
            if channel in (claim.delivered or []):
                continue
            try:
                if channel == "email":
                    subject, text, html = emails.render(alert, self.public_url)
                    message_id = self.mailer.send(list(quota.notify), subject, text, html)
                else:
                    self.webhook.send(quota.webhook_url, emails.payload(alert, self.public_url))
                    message_id = None
            except (MailError, NotifyError) as e:
                self.ledger.mark_failed(claim, str(e))
                raise
            self.ledger.mark_delivered(claim, channel, message_id)
        self.ledger.mark_sent(claim, now)
        log.info("alerts: %s notified (%s): %s", alert.service, ", ".join(channels), emails.subject(alert))

    def _record_covered(self, alert, quota, threshold: float, now: float) -> None:
        covered = self._new_alert(alert, quota, threshold, "covered", now)
        covered.covered_by = alert.threshold
        self.ledger.record_covered(covered)
