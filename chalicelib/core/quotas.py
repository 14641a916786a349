"""Quotas: a service's own quota, fleet rules by name pattern, and their validation.

Every body is validated against a JSON Schema (served at /v1/schemas/quota) before
anything is stored; quota_book.py stores them, each change with its audit entry.
Beyond the schema: recipients are checked and normalised with ``email-validator`` (the
normalised, ASCII form is what is stored and mailed), and a webhook URL must pass the
stage's target policy (core/webhook_targets.py).

A consumer (its key, names.qualified) has quotas of the same shape, stored apart from the
services' (a service and a consumer of the same name never share one); a rule applies to
services unless it says ``"applies_to": "consumer"``.

Rule patterns are globs (``*``, ``?``, ``[abc]``) matched against the whole service (or consumer) name
with ``fnmatch.fnmatchcase``: unlike a regular expression, no pattern can make matching
take more than linear-ish time, so no rule can hang the alerts function or the API.
"""
from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple, cast

import jsonschema
from email_validator import EmailNotValidError, validate_email

from chalicelib.core.errors import BadRequest
from chalicelib.core.usage import ANONYMOUS_CONSUMER, OTHER_CONSUMERS, stored_label
from chalicelib.core.webhook_targets import STRICT, UnsafeWebhookTarget, WebhookTargetPolicy

QUOTA_SCHEMA: dict = json.loads((Path(__file__).parent / "schemas" / "quota.json").read_text())
DEFAULTS = {"period": "month", "anchor_day": 1, "direction": "total", "thresholds": [80, 90, 100], "notify": [],
            "action": "warn"}
REJECT_AT_DEFAULT = 100
APPLIES_TO = ("service", "consumer")
# Consumer traffic that no consumer can be held to (core/usage.py): no quota, never blocked.
UNQUOTABLE_CONSUMERS = (ANONYMOUS_CONSUMER, OTHER_CONSUMERS)


def _rules_schema() -> dict:
    rule = copy.deepcopy(QUOTA_SCHEMA)
    for key in ("$schema", "$id", "title", "description"):
        rule.pop(key, None)
    rule["properties"]["pattern"] = {
        "type": "string", "minLength": 1, "maxLength": 256, "not": {"pattern": "[\\x00-\\x1f\\x7f]"},
        "description": "Glob matched against the whole service name, or consumer key with applies_to "
                       "consumer (case-sensitive): * any run of characters, ? one character, [abc] one of a "
                       "set; e.g. pay-* or *-api."}
    rule["properties"]["applies_to"] = {
        "enum": list(APPLIES_TO), "default": "service",
        "description": "What the pattern matches: service names (the default, so rules stored before consumers "
                       "had quotas keep their meaning) or consumer keys (a workspace other than default "
                       "prefixes its consumers' keys: ws:name). A consumer's quota counts its bytes on every "
                       "service."}
    rule["required"] = ["pattern", "limit_bytes"]
    return {
        "$schema": QUOTA_SCHEMA["$schema"],
        "$id": "https://bandwidth-meter.local/v1/schemas/quota-rules",
        "title": "Quota rules",
        "description": "Ordered; the first rule whose pattern matches a service (or, with applies_to consumer, "
                       "a consumer) applies unless it has its own quota.",
        "type": "object", "additionalProperties": False, "required": ["rules"],
        "properties": {"rules": {"type": "array", "maxItems": 200, "items": rule}},
    }


RULES_SCHEMA = _rules_schema()
_FORMATS = jsonschema.FormatChecker()


def email_address(address: str) -> str:
    """The normalised ASCII form of a recipient (what SES is given), or EmailNotValidError.

    Deliverability is not checked (no DNS from the API); SMTPUTF8 local parts are refused
    because SES cannot send to them; an internationalised domain is stored as punycode."""
    return cast(str, validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email)


@_FORMATS.checks("email", raises=EmailNotValidError)
def _is_email(instance) -> bool:
    if isinstance(instance, str):
        email_address(instance)
    return True


_QUOTA_VALIDATOR = jsonschema.Draft202012Validator(QUOTA_SCHEMA, format_checker=_FORMATS)
_RULES_VALIDATOR = jsonschema.Draft202012Validator(RULES_SCHEMA, format_checker=_FORMATS)
_SERVICE_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def is_service_name(service: str) -> bool:
    """Whether a name can be a service here (what the API can address and keys can hold)."""
    return bool(_SERVICE_NAME.fullmatch(service or ""))  # fullmatch: "$" would let a final "\n" in


def validate_service_name(service: str) -> str:
    if not is_service_name(service):
        raise BadRequest("service must be 1 to 200 characters without control characters", parameter="service")
    return service


MAX_CONSUMER_CHARS = 1000  # longer labels are stored shortened (usage.stored_label) and found by their full name
_CONSUMER_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,%d}" % MAX_CONSUMER_CHARS)


def is_consumer_name(consumer: str) -> bool:
    """Whether a name can be a consumer here: 1 to MAX_CONSUMER_CHARS characters, no control ones."""
    return bool(_CONSUMER_NAME.fullmatch(consumer or ""))  # fullmatch: "$" would let a final "\n" in


def validate_consumer_name(consumer: str) -> str:
    """The key a consumer's quota is kept under: its name as the collector stores it (a long one
    shortened like the buckets' labels), never the anonymous traffic (or the bucket of consumers
    beyond a bucket's bound), which no one owns."""
    if not is_consumer_name(consumer):
        raise BadRequest(f"consumer must be 1 to {MAX_CONSUMER_CHARS} characters without control characters",
                         parameter="consumer")
    key = stored_label(consumer)
    if key in UNQUOTABLE_CONSUMERS:
        raise BadRequest(f"{key} is traffic without a consumer: it can have no quota", parameter="consumer")
    return key


def _field_path(error: jsonschema.ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        path = "/".join(filter(None, [path, *missing]))
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        path = "/".join(filter(None, [path, *extra[:1]]))
    return path or "(body)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "format" and error.cause is not None:
        return f"{error.instance!r} is not a valid {error.validator_value}: {error.cause}"
    return error.message


def _webhook_details(body, policy: WebhookTargetPolicy, prefix: str) -> List[dict]:
    url = body.get("webhook_url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        return []
    try:
        policy.check_url(url)
    except UnsafeWebhookTarget as e:
        return [{"field": f"{prefix}webhook_url", "message": str(e)}]
    return []


def _validate(validator: jsonschema.Validator, body, extra: List[dict]) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    details = [{"field": _field_path(e), "message": _message(e)} for e in errors] + extra
    if details:
        fields = ", ".join(sorted({d["field"] for d in details}))
        raise BadRequest(f"invalid quota: {fields}", parameter=fields, details=details)


def _normalized(body: dict) -> dict:
    """Defaults filled in, recipients in their normalised form (and once each)."""
    recipients = list(dict.fromkeys(email_address(a) for a in body.get("notify", ())))
    quota = {**DEFAULTS, **body, "notify": recipients,
             "thresholds": sorted(body.get("thresholds", DEFAULTS["thresholds"]))}
    if quota["action"] == "reject":
        quota.setdefault("reject_at", REJECT_AT_DEFAULT)
    return meaningful(quota)


def meaningful(quota: dict) -> dict:
    """A quota body without the fields that mean nothing for it: ``anchor_day`` is a monthly
    period's billing-cycle day, which a day or week period ignores (quotas stored before this
    rule may still hold one: it is left out wherever a quota is shown)."""
    if quota.get("period", DEFAULTS["period"]) != "month" and "anchor_day" in quota:
        quota = {k: v for k, v in quota.items() if k != "anchor_day"}
    return quota


def normalize_quota(body, policy: WebhookTargetPolicy = STRICT) -> dict:
    """Validate a quota body and fill in its defaults (recipients in their normalised form)."""
    _validate(_QUOTA_VALIDATOR, body, _webhook_details(body, policy, ""))
    return _normalized(body)


def normalize_rules(body, policy: WebhookTargetPolicy = STRICT) -> List[dict]:
    rules = body.get("rules") if isinstance(body, dict) else None
    extra = [d for i, rule in enumerate(rules if isinstance(rules, list) else [])
             for d in _webhook_details(rule, policy, f"rules/{i}/")]
    _validate(_RULES_VALIDATOR, body, extra)
    return [_normalized(rule) for rule in body["rules"]]


def without_webhook(body: dict) -> dict:
    """A quota or rule as a read key may see it: the webhook URL is a secret of sorts (it often
    carries a token), so only admin keys are shown it."""
    return {k: v for k, v in body.items() if k != "webhook_url"}


def matches(pattern: str, service: str) -> bool:
    return fnmatch.fnmatchcase(service, pattern)


def applies_to(rule: dict) -> str:
    """What a rule's pattern matches: rules stored before consumers had quotas match services."""
    return rule.get("applies_to", "service")


@dataclass(frozen=True)
class EffectiveQuota:
    """What applies to one service: its own quota, a rule's, or none (usage still counted monthly)."""

    source: str  # "service" | "consumer" | "rule:<pattern>" | "none"
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
        return self.limit_bytes is not None and self.rejects and usage * 100 >= self.reject_at * self.limit_bytes

    def as_dict(self) -> Optional[dict]:
        if self.limit_bytes is None:
            return None
        return {"source": self.source, "limit_bytes": self.limit_bytes, "period": self.period,
                "anchor_day": self.anchor_day, "direction": self.direction,
                "thresholds": list(self.thresholds), "notify": list(self.notify), "forecast": self.forecast,
                "webhook": self.webhook_url is not None,  # whether one is set; the URL only to admins
                "action": self.action,
                **({"reject_at": self.reject_at} if self.action == "reject" else {})}


NO_QUOTA = EffectiveQuota("none")


@dataclass
class QuotaSnapshot:
    quotas: Dict[str, dict] = field(default_factory=dict)
    rules: List[dict] = field(default_factory=list)
    consumer_quotas: Dict[str, dict] = field(default_factory=dict)  # by consumer key (names.qualified)

    def rules_for(self, kind: str) -> List[dict]:
        """The rules whose pattern matches names of ``kind`` ("service" or "consumer"), in order."""
        return [rule for rule in self.rules if applies_to(rule) == kind]

    def rejecting_services(self) -> Optional[Set[str]]:
        """The services a quota may block at the gateway: their names while only services' own
        quotas reject; None once a rule rejects (a pattern may match any service)."""
        return self._rejecting(self.quotas, "service")

    def rejecting_consumers(self) -> Optional[Set[str]]:
        """As rejecting_services, for consumers (their own quotas, and rules for consumers)."""
        names = self._rejecting(self.consumer_quotas, "consumer")
        return None if names is None else names - set(UNQUOTABLE_CONSUMERS)

    def _any_rule_rejects(self, kind: str) -> bool:
        return any(EffectiveQuota.from_body("rule", rule).rejects for rule in self.rules_for(kind))

    def _rejecting(self, own: Dict[str, dict], kind: str) -> Optional[Set[str]]:
        if self._any_rule_rejects(kind):
            return None
        return {name for name, body in own.items() if EffectiveQuota.from_body(kind, body).rejects}

    def quota_for(self, service: str) -> EffectiveQuota:
        if service in self.quotas:
            return EffectiveQuota.from_body("service", self.quotas[service])
        return self._rule_quota(service, "service")

    def quota_for_consumer(self, consumer: str) -> EffectiveQuota:
        """What applies to one consumer (its key, names.qualified): its own quota, else the first
        rule for consumers whose pattern matches its key, else none. Anonymous traffic (and the
        consumers beyond a bucket's bound) has none: no one can be held to it."""
        if consumer in UNQUOTABLE_CONSUMERS:
            return NO_QUOTA
        if consumer in self.consumer_quotas:
            return EffectiveQuota.from_body("consumer", self.consumer_quotas[consumer])
        return self._rule_quota(consumer, "consumer")

    def _rule_quota(self, name: str, kind: str) -> EffectiveQuota:
        for rule in self.rules_for(kind):
            if matches(rule["pattern"], name):
                return EffectiveQuota.from_body(f"rule:{rule['pattern']}", rule)
        return NO_QUOTA
