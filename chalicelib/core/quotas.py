"""Quotas: a service's own quota, fleet rules by name pattern, validation and audit.

Every body is validated against a JSON Schema (served at /v1/schemas/quota);
a change and its audit entry are written in one transaction, so an invalid or
failed change stores nothing.
"""
from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import jsonschema
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.core.errors import BadRequest, NotFound, StoreError
from chalicelib.core.models import AuditEntry, Quota, QuotaRules
from chalicelib.core.timeutil import iso

QUOTA_SCHEMA: dict = json.loads((Path(__file__).parent / "schemas" / "quota.json").read_text())
DEFAULTS = {"period": "month", "anchor_day": 1, "direction": "total", "thresholds": [80, 90, 100], "notify": []}


def _rules_schema() -> dict:
    rule = copy.deepcopy(QUOTA_SCHEMA)
    for key in ("$schema", "$id", "title", "description"):
        rule.pop(key, None)
    rule["properties"]["pattern"] = {"type": "string", "format": "regex", "minLength": 1, "maxLength": 256,
                                     "description": "Python regular expression matched against the whole service name."}
    rule["required"] = ["pattern", "limit_bytes"]
    return {
        "$schema": QUOTA_SCHEMA["$schema"],
        "$id": "https://bandwidth-meter.local/v1/schemas/quota-rules",
        "title": "Quota rules",
        "description": "Ordered; the first rule whose pattern matches a service applies unless it has its own quota.",
        "type": "object", "additionalProperties": False, "required": ["rules"],
        "properties": {"rules": {"type": "array", "maxItems": 200, "items": rule}},
    }


RULES_SCHEMA = _rules_schema()
_FORMATS = jsonschema.FormatChecker()
_QUOTA_VALIDATOR = jsonschema.Draft202012Validator(QUOTA_SCHEMA, format_checker=_FORMATS)
_RULES_VALIDATOR = jsonschema.Draft202012Validator(RULES_SCHEMA, format_checker=_FORMATS)
_SERVICE_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def validate_service_name(service: str) -> str:
    if not _SERVICE_NAME.match(service or ""):
        raise BadRequest("service must be 1 to 200 characters without control characters", parameter="service")
    return service


def _field_path(error: jsonschema.ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        path = "/".join(filter(None, [path, *missing]))
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        path = "/".join(filter(None, [path, *extra[:1]]))
    return path or "(body)"


def _validate(validator: jsonschema.Validator, body) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        details = [{"field": _field_path(e), "message": e.message} for e in errors]
        fields = ", ".join(sorted({d["field"] for d in details}))
        raise BadRequest(f"invalid quota: {fields}", parameter=fields, details=details)


def normalize_quota(body) -> dict:
    """Validate a quota body and fill in its defaults."""
    _validate(_QUOTA_VALIDATOR, body)
    return {**DEFAULTS, **body, "thresholds": sorted(body.get("thresholds", DEFAULTS["thresholds"]))}


def normalize_rules(body) -> List[dict]:
    _validate(_RULES_VALIDATOR, body)
    return [{**DEFAULTS, **rule, "thresholds": sorted(rule.get("thresholds", DEFAULTS["thresholds"]))}
            for rule in body["rules"]]


@dataclass(frozen=True)
class EffectiveQuota:
    """What applies to one service: its own quota, a rule's, or none (usage still counted monthly)."""

    source: str  # "service" | "rule:<pattern>" | "none"
    limit_bytes: Optional[int] = None
    period: str = "month"
    anchor_day: int = 1
    direction: str = "total"
    thresholds: Tuple[float, ...] = (80, 90, 100)
    notify: Tuple[str, ...] = ()
    forecast: bool = False
    webhook_url: Optional[str] = None

    @classmethod
    def from_body(cls, source: str, body: dict) -> "EffectiveQuota":
        return cls(source, int(body["limit_bytes"]), body["period"], int(body.get("anchor_day", 1)),
                   body["direction"], tuple(body["thresholds"]), tuple(body.get("notify", ())),
                   bool(body.get("forecast", False)), body.get("webhook_url"))

    def as_dict(self) -> Optional[dict]:
        if self.limit_bytes is None:
            return None
        return {"source": self.source, "limit_bytes": self.limit_bytes, "period": self.period,
                "anchor_day": self.anchor_day, "direction": self.direction,
                "thresholds": list(self.thresholds), "notify": list(self.notify), "forecast": self.forecast,
                "webhook_url": self.webhook_url}


NO_QUOTA = EffectiveQuota("none")


@dataclass
class QuotaSnapshot:
    quotas: Dict[str, dict] = field(default_factory=dict)
    rules: List[dict] = field(default_factory=list)

    def quota_for(self, service: str) -> EffectiveQuota:
        if service in self.quotas:
            return EffectiveQuota.from_body("service", self.quotas[service])
        for rule in self.rules:
            if re.fullmatch(rule["pattern"], service):
                return EffectiveQuota.from_body(f"rule:{rule['pattern']}", rule)
        return NO_QUOTA


class QuotaBook:
    """Reads and changes quotas and rules; every change is audited in the same transaction."""

    def __init__(self, clock=None):
        import time

        self.clock = clock or time.time

    def load(self) -> QuotaSnapshot:
        try:
            quotas = {item.sk: item.body for item in Quota.query("QUOTA")}
            rules = self._rules_item()
        except PynamoDBException as e:
            raise StoreError(f"reading quotas failed: {e}") from e
        return QuotaSnapshot(quotas, rules.rules if rules else [])

    def quota_for(self, service: str) -> EffectiveQuota:
        return self.load().quota_for(service)

    def get(self, service: str) -> dict:
        try:
            return Quota.get("QUOTA", service).body
        except DoesNotExist:
            raise NotFound(f"service {service!r} has no quota of its own") from None

    def put(self, service: str, body, actor: Optional[str] = None) -> dict:
        quota = normalize_quota(body)
        old = self._quota_body(service)
        now = self.clock()
        self._transact(Quota("QUOTA", service, body=quota, updated_at=now), None,
                       self._audit(now, f"quota/{service}", "put", old, quota, actor))
        return quota

    def delete(self, service: str, actor: Optional[str] = None) -> None:
        old = self._quota_body(service)
        if old is None:
            raise NotFound(f"service {service!r} has no quota of its own")
        now = self.clock()
        self._transact(None, Quota("QUOTA", service), self._audit(now, f"quota/{service}", "delete", old, None, actor))

    def get_rules(self) -> List[dict]:
        item = self._rules_item()
        return item.rules if item else []

    def put_rules(self, body, actor: Optional[str] = None) -> List[dict]:
        rules = normalize_rules(body)
        old = self._rules_item()
        now = self.clock()
        self._transact(QuotaRules("RULES", "current", rules=rules, updated_at=now), None,
                       self._audit(now, "quota-rules", "put", old.rules if old else None, rules, actor))
        return rules

    def audit_log(self, limit: int = 100, newest_first: bool = True) -> List[dict]:
        items = AuditEntry.query("AUDIT", scan_index_forward=not newest_first, limit=limit)
        return [{"at": iso(e.at), "key": e.key, "action": e.action, "old": e.old, "new": e.new,
                 "actor": e.actor} for e in items]

    # -- helpers ---------------------------------------------------------------------------
    def _quota_body(self, service: str) -> Optional[dict]:
        try:
            return Quota.get("QUOTA", service).body
        except DoesNotExist:
            return None

    @staticmethod
    def _rules_item() -> Optional[QuotaRules]:
        try:
            return QuotaRules.get("RULES", "current")
        except DoesNotExist:
            return None

    @staticmethod
    def _audit(now: float, key: str, action: str, old, new, actor) -> AuditEntry:
        # Milliseconds since the epoch, zero-padded: the sort key orders entries in time.
        return AuditEntry("AUDIT", f"{int(now * 1000):015d}#{uuid.uuid4().hex[:12]}", at=now, key=key, action=action,
                          old=old, new=new, actor=actor)

    @staticmethod
    def _transact(save, delete, audit: AuditEntry) -> None:
        try:
            with TransactWrite(connection=Connection(region=AuditEntry.Meta.region, host=AuditEntry.Meta.host)) as tx:
                if save is not None:
                    tx.save(save)
                if delete is not None:
                    tx.delete(delete)
                tx.save(audit)
        except (TransactWriteError, PynamoDBException) as e:
            raise StoreError(f"storing the quota change failed; nothing was changed: {e}") from e
