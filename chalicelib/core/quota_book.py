"""The quota book: quotas, quota rules and their audit log in DynamoDB.

A change and its audit entry are written in one transaction, so a failed change
stores nothing and every stored change is audited.

Each quota (and the rules) carries a version, raised by one at each change, and a change is
written only if the stored version is still the one it read: two admins editing one quota at
once cannot both win, and the audit's "old" is always what the change replaced. A caller that
read a version says so (``if_match``, the HTTP If-Match of the version's ETag) and gets
PreconditionFailed when it is no longer current; a caller that names none is retried from a
fresh read, so its audit entry is still right. A deleted quota keeps its item, without the
document, so its version goes on: an ETag read before the delete never matches the quota a
later PUT stores under the same name.

A consumer's quota (``kind="consumer"``) is the same document, kept under its own key
(CONSUMER_QUOTA): a service and a consumer of the same name never share a quota, and the audit
key says which (``quota/<service>``, ``consumer-quota/<consumer>``).
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from pynamodb.exceptions import PynamoDBException, TransactWriteError

from chalicelib.core.errors import BadRequest, NotFound, PreconditionFailed, StoreError
from chalicelib.core.models import (AUDIT_PK, CONSUMER, CONSUMER_QUOTA_PK, QUOTA_PK, RULES_KEY, SERVICE, AuditEntry,
                                    Quota, QuotaRules, audit_sk, is_condition_failure, read_item, transaction)
from chalicelib.core.quotas import EffectiveQuota, QuotaSnapshot, meaningful, normalize_quota, normalize_rules
from chalicelib.core.timeutil import iso
from chalicelib.core.webhook_targets import STRICT, WebhookTargetPolicy


_QUOTA_PKS = {SERVICE: QUOTA_PK, CONSUMER: CONSUMER_QUOTA_PK}
WRITE_ATTEMPTS = 3  # a change without If-Match that lost a race is tried again from a fresh read


def audit_key(name: str, kind: str = SERVICE) -> str:
    """What an audit entry names: a service's quota, or a consumer's (never mistaken for each other)."""
    return f"quota/{name}" if kind == SERVICE else f"consumer-quota/{name}"


def _what(name: str, kind: str) -> str:
    return f"the quota of {name!r}" if kind == SERVICE else f"the quota of consumer {name!r}"


def etag(version: int) -> str:
    """The HTTP entity tag of a stored version (strong: the version names the exact document)."""
    return f'"{version}"'


_ENTITY_TAG = re.compile(r'\*|(W/)?"[0-9]{1,20}"')


def etag_matches(if_match: str, version: Optional[int]) -> bool:
    """Whether an If-Match header value names ``version`` (None: nothing is stored, which no tag
    names, not even ``*``). Weak tags (W/"3") compare by their value. A value that is not a list
    of tags this API gives out is a bad request, not a stale version."""
    tags = [tag.strip() for tag in if_match.split(",")]
    if len(tags) > 100 or not all(_ENTITY_TAG.fullmatch(tag) for tag in tags):
        raise BadRequest('If-Match must be the ETag a GET answered, such as "3" (or a comma-separated '
                         f'list of them, or *), got {if_match[:40]!r}', parameter="If-Match")
    if version is None:
        return False
    return "*" in tags or etag(version) in [tag[2:] if tag.startswith("W/") else tag for tag in tags]


@dataclass(frozen=True)
class Versioned:
    """A stored document (a quota, or the rules) with its version."""

    body: Any
    version: int

    @property
    def etag(self) -> str:
        return etag(self.version)


class QuotaBook:
    """Reads and changes quotas and rules; every change is audited in the same transaction."""

    def __init__(self, clock: Callable[[], float] = time.time, webhook_policy: WebhookTargetPolicy = STRICT):
        self.clock = clock
        self.webhook_policy = webhook_policy

    def load(self) -> QuotaSnapshot:
        rules = self._rules_item()
        return QuotaSnapshot(self._quotas(SERVICE), rules.rules if rules else [], self._quotas(CONSUMER))

    def quota_for(self, service: str) -> EffectiveQuota:
        return self.load().quota_for(service)

    def quota_for_consumer(self, consumer: str) -> EffectiveQuota:
        return self.load().quota_for_consumer(consumer)

    def get(self, service: str, kind: str = SERVICE) -> dict:
        return self.get_versioned(service, kind).body

    def get_versioned(self, service: str, kind: str = SERVICE) -> Versioned:
        """The own quota of a service (or of a consumer: ``kind``) and its version."""
        item = self._item(service, kind)
        if item is None or not _exists(item):
            raise NotFound(f"{kind} {service!r} has no quota of its own")
        return Versioned(meaningful(item.body), _version(item))

    def put(self, service: str, body, actor: Optional[str] = None, if_match: Optional[str] = None,
            kind: str = SERVICE) -> dict:
        return self.put_versioned(service, body, actor, if_match, kind).body

    def put_versioned(self, service: str, body, actor: Optional[str] = None,
                      if_match: Optional[str] = None, kind: str = SERVICE) -> Versioned:
        quota = normalize_quota(body, self.webhook_policy)
        pk = _QUOTA_PKS[kind]

        def change(item: Optional[Quota], now: float) -> Versioned:
            version = _version(item) + 1 if item is not None else 1
            self._transact(Quota(pk, service, body=quota, updated_at=now, version=version), None,
                           _unchanged_since(Quota, item),
                           self._audit(now, audit_key(service, kind), "put", item.body if item else None, quota,
                                       actor))
            return Versioned(quota, version)

        return self._change(lambda: self._item(service, kind), change, _what(service, kind),
                            if_match)

    def delete(self, service: str, actor: Optional[str] = None, if_match: Optional[str] = None,
               kind: str = SERVICE) -> None:
        pk = _QUOTA_PKS[kind]

        def change(item: Optional[Quota], now: float) -> None:
            if item is None or not _exists(item):
                raise NotFound(f"{kind} {service!r} has no quota of its own")
            deleted = Quota(pk, service, body=None, updated_at=now, version=_version(item) + 1)
            self._transact(deleted, None, _unchanged_since(Quota, item),
                           self._audit(now, audit_key(service, kind), "delete", item.body, None, actor))

        self._change(lambda: self._item(service, kind), change, _what(service, kind), if_match)

    def get_rules(self) -> List[dict]:
        return self.get_rules_versioned().body

    def get_rules_versioned(self) -> Versioned:
        """The rules and their version (0 while none were ever stored: a PUT may name that)."""
        item = self._rules_item()
        return Versioned([meaningful(rule) for rule in item.rules] if item else [], _version(item) if item else 0)

    def put_rules(self, body, actor: Optional[str] = None, if_match: Optional[str] = None) -> List[dict]:
        return self.put_rules_versioned(body, actor, if_match).body

    def put_rules_versioned(self, body, actor: Optional[str] = None, if_match: Optional[str] = None) -> Versioned:
        rules = normalize_rules(body, self.webhook_policy)

        def change(item: Optional[QuotaRules], now: float) -> Versioned:
            version = _version(item) + 1 if item is not None else 1
            self._transact(QuotaRules(*RULES_KEY, rules=rules, updated_at=now, version=version), None,
                           _unchanged_since(QuotaRules, item),
                           self._audit(now, "quota-rules", "put", item.rules if item else None, rules, actor))
            return Versioned(rules, version)

        # The rules always exist as a document (empty before the first PUT: version 0).
        return self._change(self._rules_item, change, "the quota rules", if_match, absent_version=0)

    def audit_log(self, limit: int = 100, newest_first: bool = True) -> List[dict]:
        try:
            items = list(AuditEntry.query(AUDIT_PK, scan_index_forward=not newest_first, limit=limit))
        except PynamoDBException as e:
            raise StoreError(f"reading the audit log failed: {e}") from e
        return [{"at": iso(e.at), "key": e.key, "action": e.action, "old": e.old, "new": e.new,
                 "actor": e.actor} for e in items]

    # -- helpers ---------------------------------------------------------------------------
    def _change(self, read: Callable, change: Callable, what: str, if_match: Optional[str],
                absent_version: Optional[int] = None):
        """Read the stored item, check ``if_match`` against its version, and apply ``change``
        written on condition that the item is still as read. A lost race is PreconditionFailed
        for a caller that named a version, and tried again from a fresh read for one that did not."""
        if if_match is not None and not if_match.strip():
            if_match = None  # an empty If-Match names no version: a change without one
        for _ in range(WRITE_ATTEMPTS):
            item = read()
            version = _version(item) if _exists(item) else absent_version
            if if_match is not None and not etag_matches(if_match, version):
                current = etag(version) if version is not None else None
                raise PreconditionFailed(f"{what} changed since it was read: its current version is "
                                         f"{current or 'none (it is not stored)'}; read it again and retry",
                                         current=current)
            try:
                return change(item, self.clock())
            except _LostRace:
                # Read again: a caller that named a version gets the winner's in its 412; one that
                # did not has its change applied over the winner's, audited against it.
                continue
        raise PreconditionFailed(f"{what} kept changing while this change was written; try again")

    @staticmethod
    def _quotas(kind: str) -> dict:
        """The quotas of ``kind`` by name."""
        try:
            return {item.sk: item.body for item in Quota.query(_QUOTA_PKS[kind]) if item.body is not None}
        except PynamoDBException as e:
            raise StoreError(f"reading {kind} quotas failed: {e}") from e

    def _item(self, name: str, kind: str) -> Optional[Quota]:
        return self._quota_item(name) if kind == SERVICE else self._consumer_quota_item(name)

    @staticmethod
    def _quota_item(service: str) -> Optional[Quota]:
        return read_item(Quota, (QUOTA_PK, service), _what(service, SERVICE))

    @staticmethod
    def _consumer_quota_item(consumer: str) -> Optional[Quota]:
        return read_item(Quota, (CONSUMER_QUOTA_PK, consumer), _what(consumer, CONSUMER))

    @staticmethod
    def _rules_item() -> Optional[QuotaRules]:
        return read_item(QuotaRules, RULES_KEY, "the quota rules")

    @staticmethod
    def _audit(now: float, key: str, action: str, old, new, actor) -> AuditEntry:
        return AuditEntry(AUDIT_PK, audit_sk(now, uuid.uuid4().hex[:12]), at=now, key=key, action=action,
                          old=old, new=new, actor=actor)

    @staticmethod
    def _transact(save, delete, condition, audit: AuditEntry) -> None:
        try:
            with transaction() as tx:
                if save is not None:
                    tx.save(save, condition=condition)
                if delete is not None:
                    tx.delete(delete, condition=condition)
                tx.save(audit)
        except (TransactWriteError, PynamoDBException) as e:
            if is_condition_failure(e) or _conflicted(e):
                raise _LostRace() from e
            raise StoreError(f"storing the quota change failed; nothing was changed: {e}") from e


def _conflicted(error: PynamoDBException) -> bool:
    """DynamoDB cancels a transaction that meets another one writing the same item at the same
    moment (TransactionConflict): a race too, settled by reading again."""
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "TransactionConflict" for r in reasons)


class _LostRace(Exception):
    """Another change was stored between this change's read and its write (nothing was written)."""


def _exists(item) -> bool:
    """Whether a read item holds a document: a deleted quota's item stays, without a body (its
    version goes on: an ETag read before the delete never names the quota stored after it)."""
    return item is not None and not (isinstance(item, Quota) and item.body is None)


def _version(item) -> int:
    return int(item.version) if item.version is not None else 0


def _unchanged_since(model, item):
    """The condition that the stored item is still ``item`` as read (or still absent)."""
    if item is None:
        return model.pk.does_not_exist()
    if item.version is None:  # stored before versions: the time of its last change tells
        return model.version.does_not_exist() & (model.updated_at == item.updated_at)
    return model.version == item.version
