"""The alert ledger: which (service, period, threshold) alerts are claimed, sent or covered.

Conditional writes make the ledger the arbiter between concurrent or retried
invocations of the alerts function: only one can claim an alert at a time.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from pynamodb.exceptions import PutError, PynamoDBException

from chalicelib.core.errors import StoreError
from chalicelib.core.models import Alert, alert_period_prefix, alert_pk, is_condition_failure
from chalicelib.core.timeutil import iso


class AlertLedger:
    def for_period(self, service: str, period_start: int) -> Dict[object, Alert]:
        """The period's alerts of a service by ledger key (threshold, or FORECAST)."""
        try:
            items = Alert.query(alert_pk(service), Alert.sk.startswith(alert_period_prefix(period_start)))
            return {a.ledger_key: a for a in items}
        except PynamoDBException as e:
            raise StoreError(f"reading alerts of {service!r} failed: {e}") from e

    def claim(self, claim: Alert, existing: Optional[Alert]) -> bool:
        """Store ``claim`` unless someone changed ``existing`` (or created it) since it was read."""
        if existing is None:
            condition = Alert.pk.does_not_exist()
        else:
            condition = (Alert.status == existing.status) & (Alert.claimed_at == existing.claimed_at)
        return self._save(claim, condition, f"claiming the {claim.ledger_key} alert of {claim.service!r}")

    def record_covered(self, covered: Alert) -> bool:
        """Record a lower threshold as covered by a higher one, unless it is already settled."""
        condition = Alert.pk.does_not_exist() | (Alert.status == "failed")
        return self._save(covered, condition, f"recording the covered {covered.ledger_key} alert")

    def mark_delivered(self, alert: Alert, channel: str, message_id: Optional[str] = None) -> None:
        actions = [Alert.delivered.set(list(alert.delivered or []) + [channel])]
        if message_id is not None:
            actions.append(Alert.message_id.set(message_id))
        self._update(alert, actions)

    def mark_sent(self, alert: Alert, at: float, status: str = "sent") -> None:
        self._update(alert, [Alert.status.set(status), Alert.sent_at.set(at), Alert.error.remove()])

    def mark_failed(self, alert: Alert, error: str) -> None:
        self._update(alert, [Alert.status.set("failed"), Alert.error.set(error[:500])])

    def history(self, service: str, limit: int = 200) -> List[dict]:
        try:
            items = list(Alert.query(alert_pk(service), scan_index_forward=False, limit=limit))
        except PynamoDBException as e:
            raise StoreError(f"reading the alert history of {service!r} failed: {e}") from e
        return [as_history(a) for a in items]

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _save(alert: Alert, condition, what: str) -> bool:
        try:
            alert.save(condition=condition)
        except PutError as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"{what} failed: {e}") from e
        return True

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
    }
