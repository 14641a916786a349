"""The alerts function: usage or quota changes on the stream -> one email per threshold.

Exactly once per (service, period, threshold), although streams deliver at least once:

1. the highest threshold crossed is **claimed** (a conditional write, with a due-marker, that
   also fails once a higher threshold of the period is claimed: 90 % never follows 100 %);
2. the lower thresholds the jump crossed are recorded as **covered**, before any email goes out;
3. the email (and webhook) is **sent**, then the alert marked sent and its marker removed.

An SES failure marks the alert failed and fails the record, so Lambda retries it; the
**sweep** (once a scheduled minute: the stream record of the tick item the schedule writes,
whatever the collector did, is the alerts function's clock) redelivers whatever is still due:
a failed alert, or a claim whose sender died (older than CLAIM_TIMEOUT_SECONDS), so no alert
waits for the service's next traffic. The one duplicate possible: SES accepted a message and
every attempt to record that failed, then the claim timed out; the sweep counts and logs each
such redelivery.

Quota and rule changes are judged against the period containing now only (never one that
ended); a raised limit re-arms the thresholds usage is now below, a lowered one alerts at once.

Consumers alike: a consumer's usage item (pk CONSUMERS, written by the collector) or own quota
(pk CONSUMER_QUOTA) on the stream is judged against the consumer's quota, with the same ledger
under keys of its own (``kind`` "consumer"), so a consumer and a service of the same name never
settle each other's alerts. Anonymous traffic has no quota and never alerts. A rules change is
judged for the consumers a rule for consumers governs as for services (after them, within a
budget of its own, resumed by the sweep).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Union, cast

from chalicelib.core import observability
from chalicelib.core.errors import MailError
from chalicelib.core.consumer_usage import ConsumerUsageReader, consumer_period_usage
from chalicelib.core.models import (CONSUMER, CONSUMER_QUOTA_PK, CONSUMERS_PK, ENFORCEMENT_KEY, FORECAST, QUOTA_PK,
                                    RULES_KEY, SERVICE, SERVICES_PK, TICK_KEY, Alert, ConsumerUsage,
                                    EnforcementState, ServiceUsage)
from chalicelib.core.periods import Period
from chalicelib.core.quotas import EffectiveQuota
from chalicelib.core.usage import PeriodUsage, period_usage
from chalicelib.notify import emails
from chalicelib.notify.webhook import NotifyError

log = logging.getLogger(__name__)

# A claim older than this was made by an invocation that died (the alerts function's timeout is
# 60 s), so the sweep may take it again: about two collector intervals at most.
CLAIM_TIMEOUT_SECONDS = 90
FORECAST_MIN_ELAPSED = 0.1  # judge a trend only after a tenth of the period
SWEEP_LIMIT = 100  # due alerts redelivered per sweep (least recently attempted first)
# An alert still undelivered this long after its first attempt is given up: recorded as such
# (and logged), off the sweep's list, so permanently failing ones cannot hold the sweep for ever.
GIVE_UP_AFTER_SECONDS = 24 * 3600
SETTLED = ("sent", "covered", "no_recipients", "given_up")


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


@dataclass
class SweepReport:
    redelivered: int = 0
    possibly_duplicated: int = 0  # redeliveries of claims that had timed out (the sender may have sent)
    failed: int = 0
    rules_services: int = 0  # services re-evaluated for a rules change
    given_up: List[str] = field(default_factory=list)  # "<service> <threshold>%" of each alert given up
    errors: List[str] = field(default_factory=list)


class AlertProcessor:
    def __init__(self, store, ledger, quotas, mailer, public_url: str, webhook=None,
                 rules_budget_seconds: float = 20, monotonic: Callable[[], float] = time.monotonic,
                 enforcement_notifier=None, consumers=None):
        self.store = store
        self.consumers = consumers or ConsumerUsageReader(store)  # the consumers' usage items
        self.enforcement_notifier = enforcement_notifier  # block started / ended notices; None: not enforcing
        self.ledger = ledger
        self.quotas = quotas
        self.mailer = mailer
        self.webhook = webhook
        self.public_url = public_url
        self.rules_budget_seconds = rules_budget_seconds
        self.monotonic = monotonic

    # -- stream entry point ----------------------------------------------------------------
    def handle_batch(self, event, now: float) -> dict:
        """Process records one by one; report the failed ones (ReportBatchItemFailures).
        The quotas are read once per batch."""
        failures = []
        snapshot = None
        for record in event:
            try:
                snapshot = snapshot or self.quotas.load()
                self.handle_record(record, now, snapshot)
            except Exception:  # one bad record fails alone; it is reported, never swallowed
                log.exception("alerts: record %s failed", getattr(record, "sequence_number", "?"))
                failures.append({"itemIdentifier": record.sequence_number})
        return {"batchItemFailures": failures}

    def handle_record(self, record, now: float, snapshot=None) -> None:
        snapshot = snapshot or self.quotas.load()
        keys = record.keys or {}
        pk = keys.get("pk", {}).get("S", "")
        sk = keys.get("sk", {}).get("S", "")
        if pk == SERVICES_PK and record.new_image:
            self.evaluate(sk, now, ServiceUsage.from_raw_data(record.new_image), snapshot.quota_for(sk))
        elif pk == QUOTA_PK:
            self.evaluate(sk, now, quota=snapshot.quota_for(sk), quota_changed=True)
        elif pk == CONSUMERS_PK and record.new_image:
            item = ConsumerUsage.from_raw_data(record.new_image)
            # One collector shard's item holds only that shard's part of a sharded fleet's bytes:
            # then the consumer is judged on all its shards' items, read again.
            self.evaluate(item.consumer, now, None if self.consumers.sharded else item,
                          snapshot.quota_for_consumer(item.consumer), kind=CONSUMER)
        elif pk == CONSUMER_QUOTA_PK:
            self.evaluate(sk, now, quota=snapshot.quota_for_consumer(sk), quota_changed=True, kind=CONSUMER)
        elif (pk, sk) == RULES_KEY:
            self.reevaluate_rules(now, snapshot)
            self.reevaluate_consumer_rules(now, snapshot)
        elif (pk, sk) == ENFORCEMENT_KEY and record.new_image and self.enforcement_notifier is not None:
            # The reconcile recorded blocks that started or ended: tell their owners (raises, so
            # the record is retried, when a delivery fails).
            state = EnforcementState.from_raw_data(record.new_image)
            self.enforcement_notifier.deliver(state.notices or [], now)
        elif (pk, sk) == TICK_KEY and record.new_image:
            # The scheduled minute's tick (chalicelib/schedule.py): the alerts function's clock.
            report = self.sweep(now)
            if report.redelivered or report.failed or report.rules_services:
                log.info("alerts: sweep %s", report)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, service: str, now: float, usage_item: Union[ServiceUsage, ConsumerUsage, None] = None,
                 quota: Optional[EffectiveQuota] = None, quota_changed: bool = False,
                 kind: str = SERVICE) -> Optional[float]:
        """Send the due alert for a service (or a consumer: ``kind``, ``service`` its key), if any;
        return the threshold notified.

        ``quota_changed``: the quota (or a rule) changed, not the usage: judge the period
        containing ``now`` only, and re-arm the thresholds the usage is now below."""
        quota = quota or self._quota_for(service, kind)
        if quota.limit_bytes is None:
            return None
        item = usage_item or (self.store.get_service(service) if kind == SERVICE
                              else self.consumers.get_consumer(service))
        if item is None:
            return None
        judged = self._usage(item, quota, now, quota_changed, kind)
        period, usage = judged.period, judged.of(quota.direction)
        crossed_at = int(now) if quota_changed else (int(item.through) if item.through is not None else int(now))
        existing = self.ledger.for_period(service, period.start, kind)
        if quota_changed:
            self._rearm(existing, usage, quota)
        sent = None
        due = due_thresholds(usage, quota.limit_bytes, quota.thresholds)
        pending = [t for t in due if self._claimable(existing.get(t), now)]
        if pending:
            highest = pending[-1]
            alert = emails.ThresholdAlert(service, highest, usage, quota.limit_bytes, quota.direction,
                                          period.adjective, period.start, period.end, crossed_at,
                                          covered=tuple(pending[:-1]),
                                          reject_at=quota.reject_at if quota.rejects else None, kind=kind)
            higher = [t for t in quota.thresholds if t > highest]
            claim = self._claim(alert, quota, existing.get(highest), now, higher)
            if claim is not None:
                for lower in pending[:-1]:  # recorded before the email goes out
                    self._record_covered(alert, quota, lower, now)
                self._send(claim, alert, list(quota.notify), quota.webhook_url, now)
                sent = highest
        if quota.forecast and self._claimable(existing.get(FORECAST), now):
            eta = forecast_eta(usage, quota.limit_bytes, period, crossed_at)
            if eta is not None:
                alert = emails.ThresholdAlert(service, 100, usage, quota.limit_bytes, quota.direction,
                                              period.adjective, period.start, period.end, crossed_at,
                                              forecast_eta=eta, kind=kind)
                claim = self._claim(alert, quota, existing.get(FORECAST), now)
                if claim is not None:
                    self._send(claim, alert, list(quota.notify), quota.webhook_url, now)
        return sent

    def _usage(self, item, quota: EffectiveQuota, now: float, quota_changed: bool, kind: str = SERVICE) -> PeriodUsage:
        """The usage to judge: for a usage change, the stream image's own period when it counts the
        quota's cycle (exact even if the record arrives after the period ended); else the period of now."""
        own_period = (not quota_changed and item.counts_cycle(quota.period, quota.anchor_day)
                      and int(item.period_end) > 0)
        at = int(item.period_start) if own_period else now
        if kind == CONSUMER:
            return consumer_period_usage(self.store, item, quota, at)
        return period_usage(self.store, item, quota, at)

    def _quota_for(self, name: str, kind: str) -> EffectiveQuota:
        return self.quotas.quota_for(name) if kind == SERVICE else self.quotas.quota_for_consumer(name)

    def _rearm(self, existing: dict, usage: int, quota: EffectiveQuota) -> None:
        for key, alert in list(existing.items()):
            # evaluate() re-arms only under a quota with a limit
            if key != FORECAST and alert.status in SETTLED and usage * 100 < float(key) * cast(int, quota.limit_bytes):
                if self.ledger.rearm(alert):
                    del existing[key]
                    log.info("alerts: %s %g%% re-armed: usage is below it under the new limit", alert.service, key)

    @staticmethod
    def _claimable(alert: Optional[Alert], now: float) -> bool:
        if alert is None or alert.status == "failed":
            return True
        return alert.status == "pending" and (alert.claimed_at or 0) < now - CLAIM_TIMEOUT_SECONDS

    def _new_alert(self, alert: emails.ThresholdAlert, quota: EffectiveQuota, threshold: float,
                   status: str, now: float) -> Alert:
        return Alert.record(alert.service, alert.period_start, threshold, alert.forecast_eta is not None,
                            kind=alert.kind, period_end=alert.period_end, status=status, usage_bytes=alert.usage_bytes,
                            limit_bytes=alert.limit_bytes, recipients=list(quota.notify),
                            crossed_at=alert.crossed_at, claimed_at=now, forecast_eta=alert.forecast_eta,
                            direction=alert.direction, period_kind=alert.period_kind, covers=list(alert.covered))

    def _claim(self, alert, quota, existing: Optional[Alert], now: float, higher=()) -> Optional[Alert]:
        claim = self._new_alert(alert, quota, alert.threshold, "pending", now)
        if existing is not None:
            claim.delivered = list(existing.delivered or [])  # channels a failed attempt already served
            # A retry keeps the first attempt's time: the sweep gives up GIVE_UP_AFTER_SECONDS after it.
            claim.first_claimed_at = existing.first_claimed_at or existing.claimed_at or now
            claim.attempts = int(existing.attempts or 1) + 1
        else:
            claim.first_claimed_at, claim.attempts = now, 1
        if not self.ledger.claim(claim, existing, higher):
            return None  # another invocation holds it, or a higher threshold is claimed already
        return claim

    def _send(self, claim: Alert, alert: emails.ThresholdAlert, recipients: List[str], webhook_url: Optional[str],
              now: float) -> None:
        """Deliver on every configured channel not yet served; a failure marks the alert failed
        (claimable again, still due) and fails the record, so the retry serves only what is left."""
        if webhook_url and self.webhook is None:
            log.warning("alerts: %s has a webhook_url but WEBHOOK_SECRET is not set; webhook skipped", alert.service)
        channels = [c for c, on in (("email", bool(recipients)),
                                    ("webhook", bool(webhook_url and self.webhook))) if on]
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
                    message_id = self.mailer.send(recipients, subject, text, html)
                else:
                    self.webhook.send(webhook_url, emails.payload(alert, self.public_url))
                    message_id = None
            except (MailError, NotifyError) as e:
                self.ledger.mark_failed(claim, str(e))
                observability.alert_event("failed", alert, logger=log, channel=channel, error=str(e)[:200])
                raise
            self.ledger.mark_delivered(claim, channel, message_id)
        self.ledger.mark_sent(claim, now)
        observability.alert_event("sent", alert, logger=log, channels=",".join(channels), recipients=len(recipients))

    def _record_covered(self, alert, quota, threshold: float, now: float) -> None:
        covered = self._new_alert(alert, quota, threshold, "covered", now)
        covered.covered_by = alert.threshold
        if self.ledger.record_covered(covered):
            observability.alert_event("covered", alert, threshold=threshold, logger=log, covered_by=alert.threshold)

    # -- a rules change: every service a rule now governs, within a time budget -------------------
    def reevaluate_rules(self, now: float, snapshot=None, after: Optional[str] = None) -> Optional[str]:
        """Judge the services whose quota comes from a rule, in name order from ``after``, until the
        budget is spent; return the last service judged when stopped early (None when done)."""
        snapshot = snapshot or self.quotas.load()
        deadline = self.monotonic() + self.rules_budget_seconds
        for item in self.store.list_services(after=after):
            quota = snapshot.quota_for(item.service)
            if quota.source.startswith("rule:"):
                self.evaluate(item.service, now, item, quota, quota_changed=True)
            if self.monotonic() > deadline:
                self.ledger.request_reevaluation(after=item.service, at=now)
                log.info("alerts: rules change re-evaluated up to %r; the sweep goes on from there", item.service)
                return item.service
        self.ledger.request_reevaluation(after=None, at=now)
        return None

    def reevaluate_consumer_rules(self, now: float, snapshot=None, after: Optional[str] = None) -> Optional[str]:
        """As reevaluate_rules, for the consumers a rule for consumers governs (none while no rule
        applies to consumers), within a budget of its own; "" for ``after`` starts from the first."""
        snapshot = snapshot or self.quotas.load()
        if not snapshot.rules_for(CONSUMER):
            if after is not None:
                self.ledger.request_reevaluation(after=None, at=now, kind=CONSUMER)
            return None
        deadline = self.monotonic() + self.rules_budget_seconds
        for item in self.consumers.list_consumers(after=after or None):
            quota = snapshot.quota_for_consumer(item.consumer)
            if quota.source.startswith("rule:"):
                self.evaluate(item.consumer, now, item, quota, quota_changed=True, kind=CONSUMER)
            if self.monotonic() > deadline:
                self.ledger.request_reevaluation(after=item.consumer, at=now, kind=CONSUMER)
                log.info("alerts: rules change re-evaluated up to consumer %r; the sweep goes on from there",
                         item.consumer)
                return item.consumer
        self.ledger.request_reevaluation(after=None, at=now, kind=CONSUMER)
        return None

    # -- the sweep: what the stream could not finish --------------------------------------------
    def sweep(self, now: float) -> SweepReport:
        """Redeliver due alerts (failed, or claimed by a sender that died) and continue an
        unfinished rules change. Runs every minute."""
        report = SweepReport()
        for alert in self.ledger.due(limit=SWEEP_LIMIT):
            if not self._claimable(alert, now):
                continue  # a live claim: its sender is still at work
            if self._give_up_if_overdue(alert, now, report):
                continue
            timed_out = alert.status == "pending"
            try:
                if self._redeliver(alert, now):
                    report.redelivered += 1
                    if timed_out and "email" not in (alert.delivered or []):
                        report.possibly_duplicated += 1
                        log.warning("alerts: %s %s redelivered after its claim timed out; if its sender had "
                                    "sent before dying, this is a duplicate", alert.service, alert.ledger_key)
                        observability.alert_event("duplicated", alert, logger=log)
            except (MailError, NotifyError) as e:
                report.failed += 1
                report.errors.append(f"{alert.service}: {e}"[:300])
        resume = self.ledger.reevaluation_due()
        if resume is not None:
            report.rules_services += 1
            self.reevaluate_rules(now, after=resume or None)
        resume = self.ledger.reevaluation_due(kind=CONSUMER)
        if resume is not None:
            report.rules_services += 1
            self.reevaluate_consumer_rules(now, after=resume)
        return report

    def _give_up_if_overdue(self, alert: Alert, now: float, report: SweepReport) -> bool:
        """Give up an alert first attempted GIVE_UP_AFTER_SECONDS ago or more: it stays in the
        service's alert history as ``given_up`` with the reason, and is never tried again."""
        first = alert.first_claimed_at or alert.claimed_at
        if first is None or now - float(first) < GIVE_UP_AFTER_SECONDS:
            return False
        what = "forecast" if alert.forecast else f"{float(alert.threshold):g}%"
        reason = (f"given up after {int(alert.attempts or 1)} attempts in {(now - float(first)) / 3600:.0f} h; "
                  f"last error: {alert.error or 'the sender stopped before it was sent'}")
        if self.ledger.give_up(alert, reason):
            report.given_up.append(f"{alert.service} {what}")
            log.error("alerts: %s %s alert %s", alert.service, what, reason,
                      extra={"event": "alert", "outcome": "given_up", "metered_service": alert.service,
                             "threshold": float(alert.threshold), "period_start": int(alert.period_start)})
        return True

    def _redeliver(self, due: Alert, now: float) -> bool:
        """Send a due alert again from what the ledger recorded at its claim."""
        kind = due.subject_kind
        quota = self._quota_for(due.service, kind)
        alert = emails.ThresholdAlert(
            due.service, float(due.threshold), int(due.usage_bytes), int(due.limit_bytes),
            due.direction or quota.direction, due.period_kind or "monthly", int(due.period_start),
            int(due.period_end), int(due.crossed_at), covered=tuple(float(t) for t in (due.covers or [])),
            forecast_eta=int(due.forecast_eta) if due.forecast_eta else None,
            reject_at=quota.reject_at if quota.rejects else None, kind=kind)
        claim = Alert.from_raw_data(due.serialize())
        claim.status, claim.claimed_at = "pending", now
        claim.first_claimed_at = due.first_claimed_at or due.claimed_at or now
        claim.attempts = int(due.attempts or 1) + 1
        if not self.ledger.claim(claim, due):
            return False
        self._send(claim, alert, list(due.recipients or []), quota.webhook_url, now)
        return True
