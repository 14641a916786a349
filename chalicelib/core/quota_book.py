"""The quota book: quotas, quota rules and their audit log in DynamoDB.

A change and its audit entry are written in one transaction, so a failed change
stores nothing and every stored change is audited.
"""
from __future__ import annotations

import time
import uuid
from typing import Callable, List, Optional

from pynamodb.exceptions import PynamoDBException, TransactWriteError

from chalicelib.core.errors import NotFound, StoreError
from chalicelib.core.models import (AUDIT_PK, QUOTA_PK, RULES_KEY, AuditEntry, Quota, QuotaRules, audit_sk, read_item,
                                    transaction)
from chalicelib.core.quotas import EffectiveQuota, QuotaSnapshot, normalize_quota, normalize_rules
from chalicelib.core.timeutil import iso
from chalicelib.core.webhook_targets import STRICT, WebhookTargetPolicy


class QuotaBook:
    """Reads and changes quotas and rules; every change is audited in the same transaction."""

    def __init__(self, clock: Callable[[], float] = time.time, webhook_policy: WebhookTargetPolicy = STRICT):
        self.clock = clock
        self.webhook_policy = webhook_policy

    def load(self) -> QuotaSnapshot:
        try:
            quotas = {item.sk: item.body for item in Quota.query(QUOTA_PK)}
        except PynamoDBException as e:
            raise StoreError(f"reading quotas failed: {e}") from e
        rules = self._rules_item()
        return QuotaSnapshot(quotas, rules.rules if rules else [])

    def quota_for(self, service: str) -> EffectiveQuota:
        return self.load().quota_for(service)

    def get(self, service: str) -> dict:
        body = self._quota_body(service)
        if body is None:
            raise NotFound(f"service {service!r} has no quota of its own")
        return body

    def put(self, service: str, body, actor: Optional[str] = None) -> dict:
        quota = normalize_quota(body, self.webhook_policy)
        old = self._quota_body(service)
        now = self.clock()
        self._transact(Quota(QUOTA_PK, service, body=quota, updated_at=now), None,
                       self._audit(now, f"quota/{service}", "put", old, quota, actor))
        return quota

    def delete(self, service: str, actor: Optional[str] = None) -> None:
        old = self._quota_body(service)
        if old is None:
            raise NotFound(f"service {service!r} has no quota of its own")
        now = self.clock()
        self._transact(None, Quota(QUOTA_PK, service), self._audit(now, f"quota/{service}", "delete", old, None, actor))

    def get_rules(self) -> List[dict]:
        item = self._rules_item()
        return item.rules if item else []

    def put_rules(self, body, actor: Optional[str] = None) -> List[dict]:
        rules = normalize_rules(body, self.webhook_policy)
        old = self._rules_item()
        now = self.clock()
        self._transact(QuotaRules(*RULES_KEY, rules=rules, updated_at=now), None,
                       self._audit(now, "quota-rules", "put", old.rules if old else None, rules, actor))
        return rules

    def audit_log(self, limit: int = 100, newest_first: bool = True) -> List[dict]:
        try:
            items = list(AuditEntry.query(AUDIT_PK, scan_index_forward=not newest_first, limit=limit))
        except PynamoDBException as e:
            raise StoreError(f"reading the audit log failed: {e}") from e
        return [{"at": iso(e.at), "key": e.key, "action": e.action, "old": e.old, "new": e.new,
                 "actor": e.actor} for e in items]

    # -- helpers ---------------------------------------------------------------------------
    def _quota_body(self, service: str) -> Optional[dict]:
        item = read_item(Quota, (QUOTA_PK, service), f"the quota of {service!r}")
        return item.body if item is not None else None

    @staticmethod
    def _rules_item() -> Optional[QuotaRules]:
        return read_item(QuotaRules, RULES_KEY, "the quota rules")

    @staticmethod
    def _audit(now: float, key: str, action: str, old, new, actor) -> AuditEntry:
        return AuditEntry(AUDIT_PK, audit_sk(now, uuid.uuid4().hex[:12]), at=now, key=key, action=action,
                          old=old, new=new, actor=actor)

    @staticmethod
    def _transact(save, delete, audit: AuditEntry) -> None:
        try:
            with transaction() as tx:
                if save is not None:
                    tx.save(save)
                if delete is not None:
                    tx.delete(delete)
                tx.save(audit)
        except (TransactWriteError, PynamoDBException) as e:
            raise StoreError(f"storing the quota change failed; nothing was changed: {e}") from e
