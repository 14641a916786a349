"""Quotas: a service's own quota, fleet rules by name pattern, and their validation.

Every body is validated against a JSON Schema (served at /v1/schemas/quota) before
anything is stored; quota_book.py stores them, each change with its audit entry.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import jsonschema

from chalicelib.core.errors import BadRequest

QUOTA_SCHEMA: dict = json.loads((Path(__file__).parent / "schemas" / "quota.json").read_text())
DEFAULTS = {"period": "month", "anchor_day": 1, "direction": "total", "thresholds": [80, 90, 100], "notify": [],
            "action": "warn"}
REJECT_AT_DEFAULT = 100


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


def is_service_name(service: str) -> bool:
    """Whether a name can be a service here (what the API can address and keys can hold)."""
    return bool(_SERVICE_NAME.match(service or ""))


def validate_service_name(service: str) -> str:
    if not is_service_name(service):
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


def _with_defaults(body: dict) -> dict:
    quota = {**DEFAULTS, **body, "thresholds": sorted(body.get("thresholds", DEFAULTS["thresholds"]))}
    if quota["action"] == "reject":
        quota.setdefault("reject_at", REJECT_AT_DEFAULT)
    return quota


def normalize_quota(body) -> dict:
    """Validate a quota body and fill in its defaults."""
    _validate(_QUOTA_VALIDATOR, body)
    return _with_defaults(body)


def normalize_rules(body) -> List[dict]:
    _validate(_RULES_VALIDATOR, body)
    return [_with_defaults(rule) for rule in body["rules"]]


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
    action: str = "warn"  # "warn": emails only; "reject": also blocked at the gateway from reject_at
    reject_at: float = REJECT_AT_DEFAULT

    @classmethod
    def from_body(cls, source: str, body: dict) -> "EffectiveQuota":
        # Quotas stored before enforcement existed have no action: they warn, as they always did.
        return cls(source, int(body["limit_bytes"]), body["period"], int(body.get("anchor_day", 1)),
                   body["direction"], tuple(body["thresholds"]), tuple(body.get("notify", ())),
                   bool(body.get("forecast", False)), body.get("webhook_url"),
                   body.get("action", "warn"), body.get("reject_at", REJECT_AT_DEFAULT))

    @property
    def rejects(self) -> bool:
        return self.action == "reject" and self.limit_bytes is not None

    def rejects_at(self, usage: int) -> bool:
        """Whether ``usage`` in the period is enough to block the service at the gateway."""
        return self.rejects and usage * 100 >= self.reject_at * self.limit_bytes

    def as_dict(self) -> Optional[dict]:
        if self.limit_bytes is None:
            return None
        return {"source": self.source, "limit_bytes": self.limit_bytes, "period": self.period,
                "anchor_day": self.anchor_day, "direction": self.direction,
                "thresholds": list(self.thresholds), "notify": list(self.notify), "forecast": self.forecast,
                "webhook_url": self.webhook_url, "action": self.action,
                **({"reject_at": self.reject_at} if self.action == "reject" else {})}


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
