"""The alert ledger: which (service, period, threshold) alerts are claimed, sent or covered.

Conditional writes make the ledger the arbiter between concurrent or retried invocations
of the alerts function: only one can claim an alert at a time, and none can claim a lower
threshold of a period once a higher one is claimed or sent. A claim is written with a
due-marker in the same transaction, and the marker goes only with "sent": so an alert whose
sender died or whose email failed stays on the sweep's work list until it is delivered.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from pynamodb.exceptions import PutError, PynamoDBException

from chalicelib.core.errors import StoreError
from chalicelib.core.models import (ALERTS_DUE_PK, CONSUMER_RULES_REEVALUATION_KEY, RULES_REEVALUATION_KEY, SERVICE,
                                    Alert, AlertDue,
                                    RulesReevaluation, alert_period_prefix, alert_pk, alert_sk, is_condition_failure,
                                    read_item, transaction)
from chalicelib.core.timeutil import iso


# Markers the sweep reads to choose what to retry: a sweep retries SWEEP_LIMIT of them, least
# recently attempted first, so this many alerts due at once are all retried in turn.
DUE_SCAN_LIMIT = 2000


class AlertLedger:
    def for_period(self, service: str, period_start: int, kind: str = SERVICE) -> Dict[object, Alert]:
        """The period's alerts of a service (or of a consumer: ``kind``) by ledger key (threshold, or FORECAST)."""
        try:
            items = Alert.query(alert_pk(service, kind), Alert.sk.startswith(alert_period_prefix(period_start)))
            return {a.ledger_key: a for a in items}
        except PynamoDBException as e:
            raise StoreError(f"reading alerts of {service!r} failed: {e}") from e

    def claim(self, claim: Alert, existing: Optional[Alert], higher: Iterable[float] = ()) -> bool:
        """Store ``claim`` and its due-marker unless someone changed ``existing`` (or created it)
        since it was read, or claimed or sent one of the ``higher`` thresholds of the period."""
        if existing is None:
            condition = Alert.pk.does_not_exist()
        else:
            condition = (Alert.status == existing.status) & (Alert.claimed_at == existing.claimed_at)
        try:
            with transaction() as tx:
                tx.save(claim, condition=condition)
                tx.save(AlertDue.of(claim))
                for threshold in higher:
                    tx.condition_check(Alert, claim.pk, alert_sk(int(claim.period_start), threshold),
                                       condition=Alert.pk.does_not_exist())
        except PynamoDBException as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"claiming the {claim.ledger_key} alert of {claim.service!r} failed: {e}") from e
        return True

    def record_covered(self, covered: Alert) -> bool:
        """Record a lower threshold as covered by a higher one, unless it is already settled."""
        try:
            covered.save(condition=Alert.pk.does_not_exist() | (Alert.status == "failed"))
        except PutError as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"recording the covered {covered.ledger_key} alert failed: {e}") from e
        return True

    def mark_delivered(self, alert: Alert, channel: str, message_id: Optional[str] = None) -> None:
        actions = [Alert.delivered.set(list(alert.delivered or []) + [channel])]
        if message_id is not None:
            actions.append(Alert.message_id.set(message_id))
        self._update(alert, actions)

    def mark_sent(self, alert: Alert, at: float, status: str = "sent") -> None:
        """Settle the alert and take it off the sweep's list, in one transaction."""
        try:
            with transaction() as tx:
                tx.update(alert, actions=[Alert.status.set(status), Alert.sent_at.set(at), Alert.error.remove()])
                tx.delete(AlertDue.of(alert))
        except PynamoDBException as e:
            raise StoreError(f"recording the {alert.ledger_key} alert of {alert.service!r} as {status} failed: "
                             f"{e}") from e
        alert.status, alert.sent_at, alert.error = status, at, None

    def mark_failed(self, alert: Alert, error: str) -> None:
        self._update(alert, [Alert.status.set("failed"), Alert.error.set(error[:500])])

    def rearm(self, alert: Alert) -> bool:
        """Forget a settled alert (the limit was raised above the usage), unless it changed since read."""
        try:
            alert.delete(condition=(Alert.status == alert.status) & (Alert.claimed_at == alert.claimed_at))
        except PynamoDBException as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"re-arming the {alert.ledger_key} alert of {alert.service!r} failed: {e}") from e
        return True

    def due(self, limit: int = 100, scan: int = DUE_SCAN_LIMIT) -> List[Alert]:
        """Alerts claimed and not yet sent, least recently attempted first, for the sweep.

        Up to ``scan`` markers are read, not only the first ``limit``: markers sort by period, so
        taking the first ones would retry the same old, permanently failing alerts every minute
        and never reach a newer one behind them."""
        try:
            markers = list(AlertDue.query(ALERTS_DUE_PK, limit=scan))
            if not markers:
                return []
            found = {(a.pk, a.sk): a for a in Alert.batch_get([m.alert_key for m in markers])}
            alerts = []
            for marker in markers:
                alert = found.get(marker.alert_key)
                if alert is None or alert.status not in ("pending", "failed"):
                    marker.delete()  # settled (or gone) without its marker: nothing is due
                else:
                    alerts.append(alert)
        except PynamoDBException as e:
            raise StoreError(f"reading the alerts due failed: {e}") from e
        alerts.sort(key=lambda a: (float(a.claimed_at or 0), a.sk, a.subject_kind, a.service))
        return alerts[:limit]

    def give_up(self, alert: Alert, reason: str) -> bool:
        """Stop retrying an alert: record it as given up (with why) and take it off the sweep's
        list, in one transaction, unless another invocation claimed it since it was read."""
        try:
            with transaction() as tx:
                tx.update(alert, actions=[Alert.status.set("given_up"), Alert.error.set(reason[:500])],
                          condition=(Alert.status == alert.status) & (Alert.claimed_at == alert.claimed_at))
                tx.delete(AlertDue.of(alert))
        except PynamoDBException as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"giving up the {alert.ledger_key} alert of {alert.service!r} failed: {e}") from e
        alert.status, alert.error = "given_up", reason[:500]
        return True

    def request_reevaluation(self, after: Optional[str], at: float, kind: str = SERVICE) -> None:
        """Remember where an unfinished rules change resumes (after that service, or with ``kind``
        "consumer" that consumer; "" from the first), or that none is left."""
        key = RULES_REEVALUATION_KEY if kind == SERVICE else CONSUMER_RULES_REEVALUATION_KEY
        try:
            if after is None:
                RulesReevaluation(*key).delete()
            else:
                RulesReevaluation(*key, after=after, requested_at=at).save()
        except PynamoDBException as e:
            raise StoreError(f"recording the rules re-evaluation failed: {e}") from e

    def reevaluation_due(self, kind: str = SERVICE) -> Optional[str]:
        """The service (or consumer) an unfinished rules change resumes after ("" from the first), or
        None when there is none."""
        key = RULES_REEVALUATION_KEY if kind == SERVICE else CONSUMER_RULES_REEVALUATION_KEY
        item = read_item(RulesReevaluation, key, "the rules re-evaluation")
        if item is None:
            return None
        return item.after or ""

    def history(self, service: str, limit: int = 200, kind: str = SERVICE) -> List[dict]:
        try:
            items = list(Alert.query(alert_pk(service, kind), scan_index_forward=False, limit=limit))
        except PynamoDBException as e:
            raise StoreError(f"reading the alert history of {service!r} failed: {e}") from e
        return [as_history(a) for a in items]

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _update(alert: Alert, actions) -> None:
        try:
            alert.update(actions=actions)
        except PynamoDBException as e:
            raise StoreError(f"updating the {alert.ledger_key} alert of {alert.service!r} failed: {e}") from e


def as_history(a: Alert) -> dict:
    return {
        "threshold": float(a.threshold), "status": a.status, "period_start": iso(a.period_start),
        "period_end": iso(a.period_end), "usage_bytes": int(a.usage_bytes), "limit_bytes": int(a.limit_bytes),
        "recipients": list(a.recipients or []), "crossed_at": iso(a.crossed_at),
        "sent_at": iso(a.sent_at) if a.sent_at else None, "message_id": a.message_id,
        "covered_by": float(a.covered_by) if a.covered_by is not None else None, "error": a.error,
        "forecast": bool(a.forecast), "forecast_eta": iso(a.forecast_eta) if a.forecast_eta else None,
        "delivered": list(a.delivered or []),
        "attempts": int(a.attempts) if a.attempts is not None else None,
        "first_claimed_at": iso(a.first_claimed_at) if a.first_claimed_at else None,
    }
