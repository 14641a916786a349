"""In-memory stand-ins for the persistence adapters, with the same interfaces and the same
conditional-write semantics, so the alert logic can be specified without DynamoDB."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

from chalicelib.core.alert_ledger import as_history
from chalicelib.core.models import Alert
from chalicelib.core.quotas import NO_QUOTA, EffectiveQuota, normalize_quota
from chalicelib.core.usage import BucketUsage


class InMemoryAlertLedger:
    def __init__(self):
        self.alerts: Dict[tuple, Alert] = {}
        self.writes: List[tuple] = []  # (operation, service, ledger key, status), in order

    def _key(self, alert: Alert):
        return alert.service, int(alert.period_start), alert.ledger_key

    def _store(self, operation: str, alert: Alert) -> None:
        self.alerts[self._key(alert)] = copy.deepcopy(alert)
        self.writes.append((operation, alert.service, alert.ledger_key, alert.status))

    def for_period(self, service: str, period_start: int) -> Dict[object, Alert]:
        return {key: copy.deepcopy(a) for (s, p, key), a in self.alerts.items()
                if s == service and p == period_start}

    def claim(self, claim: Alert, existing: Optional[Alert]) -> bool:
        stored = self.alerts.get(self._key(claim))
        if existing is None:
            won = stored is None
        else:
            won = stored is not None and (stored.status, stored.claimed_at) == (existing.status, existing.claimed_at)
        if won:
            self._store("claim", claim)
        return won

    def record_covered(self, covered: Alert) -> bool:
        stored = self.alerts.get(self._key(covered))
        if stored is not None and stored.status != "failed":
            return False
        self._store("covered", covered)
        return True

    def mark_delivered(self, alert: Alert, channel: str, message_id: Optional[str] = None) -> None:
        alert.delivered = list(alert.delivered or []) + [channel]
        if message_id is not None:
            alert.message_id = message_id
        self._store("delivered", alert)

    def mark_sent(self, alert: Alert, at: float, status: str = "sent") -> None:
        alert.status, alert.sent_at, alert.error = status, at, None
        self._store("sent", alert)

    def mark_failed(self, alert: Alert, error: str) -> None:
        alert.status, alert.error = "failed", error[:500]
        self._store("failed", alert)

    def history(self, service: str, limit: int = 200) -> List[dict]:
        mine = [a for (s, _, _), a in sorted(self.alerts.items(), key=lambda kv: str(kv[0]), reverse=True)
                if s == service]
        return [as_history(a) for a in mine[:limit]]

    def statuses(self, service: str) -> Dict[object, str]:
        return {key: a.status for (s, _, key), a in self.alerts.items() if s == service}


class InMemoryQuotaBook:
    """Quotas by service (no rules), validated as the real book validates them."""

    def __init__(self, quotas: Optional[Dict[str, dict]] = None):
        self.quotas = {service: normalize_quota(body) for service, body in (quotas or {}).items()}

    def quota_for(self, service: str) -> EffectiveQuota:
        body = self.quotas.get(service)
        return EffectiveQuota.from_body("service", body) if body else NO_QUOTA


class InMemoryUsageStore:
    """Service items and stored buckets, enough for period usage."""

    def __init__(self):
        self.services = {}
        self.buckets: List[BucketUsage] = []

    def get_service(self, service: str):
        return self.services.get(service)

    def list_services(self):
        return list(self.services.values())

    def range_total(self, service: str, start: int, end: int) -> BucketUsage:
        total = BucketUsage(service, start)
        for bucket in self.buckets:
            if bucket.service == service and start <= bucket.start < end:
                total.merge(bucket)
        return total
