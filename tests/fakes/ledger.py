"""In-memory stand-ins for the persistence adapters: the ``AlertLedgerPort`` and ``QuotaSource``
ports (chalicelib/core/ports.py), with the same conditional-write semantics, so the alert logic
can be specified without DynamoDB (the usage store's is tests/fakes/usage_store.py)."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

from chalicelib.core.alert_ledger import as_history
from chalicelib.core.models import Alert
from chalicelib.core.quotas import EffectiveQuota, QuotaSnapshot, normalize_quota, normalize_rules


class InMemoryAlertLedger:
    def __init__(self):
        self.alerts: Dict[tuple, Alert] = {}
        self.writes: List[tuple] = []  # (operation, service, ledger key, status), in order
        self.due_keys = set()  # claimed, not yet sent
        self.reevaluation: Optional[str] = None
        self.consumer_reevaluation: Optional[str] = None

    @staticmethod
    def _subject(service: str, kind: str = "service"):
        """A service is keyed by its name, a consumer apart (as the real ledger's keys are)."""
        return service if kind == "service" else (kind, service)

    def _key(self, alert: Alert):
        return self._subject(alert.service, alert.subject_kind), int(alert.period_start), alert.ledger_key

    def _store(self, operation: str, alert: Alert) -> None:
        self.alerts[self._key(alert)] = copy.deepcopy(alert)
        self.writes.append((operation, alert.service, alert.ledger_key, alert.status))

    def for_period(self, service: str, period_start: int, kind: str = "service") -> Dict[object, Alert]:
        subject = self._subject(service, kind)
        return {key: copy.deepcopy(a) for (s, p, key), a in self.alerts.items()
                if s == subject and p == period_start}

    def claim(self, claim: Alert, existing: Optional[Alert], higher=()) -> bool:
        stored = self.alerts.get(self._key(claim))
        if existing is None:
            won = stored is None
        else:
            won = stored is not None and (stored.status, stored.claimed_at) == (existing.status, existing.claimed_at)
        subject = self._subject(claim.service, claim.subject_kind)
        won = won and not any((subject, int(claim.period_start), float(t)) in self.alerts for t in higher)
        if won:
            self._store("claim", claim)
            self.due_keys.add(self._key(claim))
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
        self.due_keys.discard(self._key(alert))

    def rearm(self, alert: Alert) -> bool:
        stored = self.alerts.get(self._key(alert))
        if stored is None or (stored.status, stored.claimed_at) != (alert.status, alert.claimed_at):
            return False
        del self.alerts[self._key(alert)]
        self.writes.append(("rearm", alert.service, alert.ledger_key, None))
        return True

    def due(self, limit: int = 100) -> List[Alert]:
        """Least recently attempted first, as the real ledger orders them."""
        order = sorted(self.due_keys, key=lambda key: (float(self.alerts[key].claimed_at or 0), str(key)))
        return [copy.deepcopy(self.alerts[key]) for key in order[:limit]]

    def give_up(self, alert: Alert, reason: str) -> bool:
        stored = self.alerts.get(self._key(alert))
        if stored is None or (stored.status, stored.claimed_at) != (alert.status, alert.claimed_at):
            return False
        alert.status, alert.error = "given_up", reason[:500]
        self._store("given_up", alert)
        self.due_keys.discard(self._key(alert))
        return True

    def request_reevaluation(self, after: Optional[str], at: float, kind: str = "service") -> None:
        if kind == "service":
            self.reevaluation = after
        else:
            self.consumer_reevaluation = after

    def reevaluation_due(self, kind: str = "service") -> Optional[str]:
        return self.reevaluation if kind == "service" else self.consumer_reevaluation

    def mark_failed(self, alert: Alert, error: str) -> None:
        alert.status, alert.error = "failed", error[:500]
        self._store("failed", alert)

    def history(self, service: str, limit: int = 200, kind: str = "service") -> List[dict]:
        subject = self._subject(service, kind)
        mine = [a for (s, _, _), a in sorted(self.alerts.items(), key=lambda kv: str(kv[0]), reverse=True)
                if s == subject]
        return [as_history(a) for a in mine[:limit]]

    def statuses(self, service: str) -> Dict[object, str]:
        return {key: a.status for (s, _, key), a in self.alerts.items() if s == service}


class InMemoryQuotaBook:
    """Quotas by service and rules by pattern, validated as the real book validates them."""

    def __init__(self, quotas: Optional[Dict[str, dict]] = None, rules: Optional[List[dict]] = None):
        self.quotas = {service: normalize_quota(body) for service, body in (quotas or {}).items()}
        self.rules = normalize_rules({"rules": rules}) if rules else []
        self.loads = 0

    def load(self) -> QuotaSnapshot:
        self.loads += 1
        return QuotaSnapshot(dict(self.quotas), list(self.rules))

    def quota_for(self, service: str) -> EffectiveQuota:
        return self.load().quota_for(service)
