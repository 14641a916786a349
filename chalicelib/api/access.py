"""API keys, roles and throttling: who may call which route, and how often.

Every request to ``/v1/...`` and ``/metrics/...`` carries an ``x-api-key`` header naming a key
with one of two roles: ``read`` (charts, stats, alerts, the overview) or ``admin`` (also
quotas, quota rules and the quota audit). The documentation, the dashboard page and
``/v1/health`` are open; the dashboard asks its user for a key and calls the API with it.

Answers, as ``{"error": {"code", "message"}}`` (chalicelib.http.error_response):

- 401 ``unauthorized``: no key, or a key that is not configured;
- 403 ``forbidden``: a read key on an admin route;
- 429 ``throttled`` with ``Retry-After`` (whole seconds): the key's or the API's limit is spent.

Keys come from ``API_KEYS`` (``KEY:ROLE,...``; a key may be given as ``sha256:HEX`` so the
configuration holds no usable key). Only digests are kept; logs name a key by the first eight
hex digits of its SHA-256 (``key#1a2b3c4d``), never by the key. With no keys configured the
``dev`` stage is open (and says so when the guard is built and in ``startup_notice``); every
other stage then refuses all protected requests: it fails closed.

Throttling is two token buckets, both refused before they are spent (a refused request costs
nothing): one per key, holding ``THROTTLE_PER_KEY_PER_MINUTE`` tokens and refilled at that many
per minute (a burst of up to N, then N a minute), and one for the whole API holding
``THROTTLE_PER_SECOND`` tokens refilled at that many per second. These are the semantics of an
API Gateway usage plan (rate plus burst), so the local runtime behaves like the deployment.
Only requests that passed the key and role checks are counted; the open routes are not.
In the open dev stage only the overall bucket applies.

**In AWS** (``AWS_LAMBDA_FUNCTION_NAME`` is set) the in-memory throttle is off by default
(``THROTTLE_ENABLED=false``): each Lambda instance would count only its own share of the
traffic, and API Gateway enforces the limits for the whole API instead:

- the protected routes are ``api_key_required``; every key is an API Gateway API key in a usage
  plan with ``throttle.rateLimit = THROTTLE_PER_KEY_PER_MINUTE / 60`` and
  ``throttle.burstLimit = THROTTLE_PER_KEY_PER_MINUTE``;
- the stage's method settings carry the overall limit: ``throttlingRateLimit =
  THROTTLE_PER_SECOND`` and ``throttlingBurstLimit = THROTTLE_PER_SECOND``;
- gateway responses keep the answers the same: ``INVALID_API_KEY`` (403 by default) becomes
  401 with an ``unauthorized`` body, and ``THROTTLED`` / ``QUOTA_EXCEEDED`` are 429 with a
  ``throttled`` body and ``Retry-After: 1`` (API Gateway cannot compute the wait);
- this function still maps the key to its role (``API_KEYS`` as ``sha256:`` digests), which is
  what answers 403 for a read key on an admin route.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple

from chalicelib.api.http import error_response
from chalicelib.core import observability

log = logging.getLogger(__name__)

READ, ADMIN = "read", "admin"
OPEN_ROUTES = frozenset({"/v1/health", "/openapi.json", "/docs", "/", "/dashboard"})
ADMIN_ROUTES = frozenset({
    ("PUT", "/v1/services/{service}/quota"),
    ("DELETE", "/v1/services/{service}/quota"),
    ("PUT", "/v1/quota-rules"),
    ("GET", "/v1/quota-audit"),
})
_RANK = {READ: 1, ADMIN: 2}
_CONTEXT_KEY = "bandwidth_meter_access"


def required_role(method: str, route: str) -> Optional[str]:
    """The role a route needs, or None for an open one. Unlisted routes need ``read``."""
    if method == "OPTIONS" or route in OPEN_ROUTES:
        return None  # CORS preflights cannot carry the key
    return ADMIN if (method, route) in ADMIN_ROUTES else READ


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """How logs and the audit trail name a key: a short hash, never the key."""
    return f"key#{digest[:8]}"


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``capacity / period`` per second."""

    def __init__(self, capacity: int, period: float, now: float):
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused
    scope: Optional[str] = None  # "key" or "api" when refused


class Throttle:
    """Per-key and overall token buckets; thread-safe (``chalice local`` serves from threads)."""

    def __init__(self, per_key_per_minute: int, per_second: int, clock: Callable[[], float] = time.monotonic):
        self.per_key_per_minute = per_key_per_minute
        self.per_second = per_second
        self.clock = clock
        self._lock = threading.Lock()
        self._overall = TokenBucket(per_second, 1.0, clock())
        self._keys: Dict[str, TokenBucket] = {}  # bounded: only configured keys get here

    def admit(self, identity: Optional[str]) -> Verdict:
        """Spend one token from the key's bucket (if ``identity``) and the overall one, or none."""
        with self._lock:
            now = self.clock()
            buckets = [("api", self._overall)]
            if identity is not None:
                bucket = self._keys.get(identity)
                if bucket is None:
                    bucket = self._keys[identity] = TokenBucket(self.per_key_per_minute, 60.0, now)
                buckets.insert(0, ("key", bucket))
            waits = [(bucket.wait(now), scope) for scope, bucket in buckets]
            longest, scope = max(waits, key=lambda w: w[0])
            if longest > 0:
                return Verdict(False, max(1, math.ceil(longest - 1e-9)), scope)
            for _, bucket in buckets:
                bucket.take(now)
            return Verdict(True)


@dataclass(frozen=True)
class Denial:
    status: int
    code: str
    message: str
    retry_after: Optional[int] = None


@dataclass(frozen=True)
class Caller:
    """Who a request came from, once the key is known."""

    digest: Optional[str]
    role: str

    @property
    def name(self) -> str:
        return key_id(self.digest) if self.digest else "anonymous"


class AccessGuard:
    def __init__(self, keys: Mapping[str, str], stage: str = "dev", throttle: Optional[Throttle] = None):
        self.keys = dict(keys)  # SHA-256 digest -> role
        self.stage = stage
        self.throttle = throttle

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], float] = time.monotonic) -> "AccessGuard":
        throttle = (Throttle(settings.throttle_per_key_per_minute, settings.throttle_per_second, clock)
                    if settings.throttle_enabled else None)
        guard = cls(dict(settings.api_keys), settings.stage, throttle)
        (log.warning if not guard.keys else log.info)("access: %s", guard.describe())
        return guard

    @property
    def open(self) -> bool:
        return not self.keys and self.stage == "dev"

    def describe(self) -> str:
        """One line for the start-up banner and the log."""
        if self.keys:
            roles = sorted(self.keys.values())
            access = f"{len(roles)} API keys ({roles.count(READ)} read, {roles.count(ADMIN)} admin)"
        elif self.open:
            access = "OPEN: no API_KEYS are configured, so the dev stage accepts requests without a key"
        else:
            access = f"CLOSED: no API_KEYS are configured for stage {self.stage!r}; every API request gets 401"
        if self.throttle is None:
            limits = "throttling off here (API Gateway's usage plan applies)"
        else:
            limits = (f"throttle {self.throttle.per_key_per_minute}/min per key, "
                      f"{self.throttle.per_second}/s overall")
        return f"{access}; {limits}"

    # -- decisions (pure but for the throttle's clock) ---------------------------------------
    def authenticate(self, api_key: Optional[str]) -> Tuple[Optional[Caller], Optional[Denial]]:
        if self.open:
            return Caller(None, ADMIN), None
        if not self.keys:
            return None, Denial(401, "unauthorized", f"this API has no keys configured for stage "
                                                     f"{self.stage!r}, so it accepts no requests")
        if not api_key:
            return None, Denial(401, "unauthorized", "an API key is required: send it in the x-api-key header")
        digest = key_digest(api_key)
        role = self.keys.get(digest)
        if role is None:
            return Caller(digest, ""), Denial(401, "unauthorized", "the API key is not valid")
        return Caller(digest, role), None

    def check(self, method: str, route: str, api_key: Optional[str]) -> Tuple[Optional[Caller], Optional[Denial]]:
        """Whether a request may proceed: (caller, None) or (caller or None, denial)."""
        needed = required_role(method, route)
        if needed is None:
            return None, None
        caller, denial = self.authenticate(api_key)
        if denial:
            return caller, denial
        if _RANK[caller.role] < _RANK[needed]:
            return caller, Denial(403, "forbidden", f"{method} {route} needs the {needed} role; "
                                                    f"this key has the {caller.role} role")
        if self.throttle is not None:
            verdict = self.throttle.admit(caller.digest)
            if not verdict.allowed:
                whose = "this key's" if verdict.scope == "key" else "the API's overall"
                limit = (f"{self.throttle.per_key_per_minute} per minute" if verdict.scope == "key"
                         else f"{self.throttle.per_second} per second")
                return caller, Denial(429, "throttled", f"too many requests: {whose} limit is {limit}; "
                                                        f"retry in {verdict.retry_after} s", verdict.retry_after)
        return caller, None

    # -- the middleware ----------------------------------------------------------------------
    def guard(self, event, get_response):
        if event is None:  # not a routed request; Chalice answers it itself
            return get_response(event)
        route = (event.context or {}).get("resourcePath") or event.path
        caller, denial = self.check(event.method, route, presented_key(event))
        if denial is None:
            if caller is not None:
                event.context[_CONTEXT_KEY] = caller
            return get_response(event)
        who = caller.name if caller else "no key"
        observability.request_refused(event.method, route, denial.status, denial.code, who,
                                      denial.retry_after if denial.status == 429 else None, logger=log)
        if denial.status == 429:
            headers = {"Retry-After": str(denial.retry_after), "Access-Control-Expose-Headers": "Retry-After"}
        else:
            headers = None
        return error_response(denial.status, denial.code, denial.message, headers=headers)


def presented_key(event) -> Optional[str]:
    """The request's key: the x-api-key header (API Gateway also reports it as identity.apiKey)."""
    key = (event.headers or {}).get("x-api-key")
    if not key:
        key = ((event.context or {}).get("identity") or {}).get("apiKey")
    return key.strip() if key else None


def actor(request) -> Optional[str]:
    """The caller's name for the audit trail (``key#1a2b3c4d``), or None when the API is open."""
    caller = ((getattr(request, "context", None) or {}).get(_CONTEXT_KEY))
    return caller.name if caller and caller.digest else None


def startup_notice(settings) -> str:
    """The access line for a start-up banner (the local runtime prints it)."""
    return AccessGuard(dict(settings.api_keys), settings.stage,
                       Throttle(settings.throttle_per_key_per_minute, settings.throttle_per_second)
                       if settings.throttle_enabled else None).describe()
