"""API keys, roles and throttling: who may call which route, and how often.

Every request to ``/v1/...`` and ``/metrics/...`` carries an ``x-api-key`` header naming a key
with one of three roles: ``read`` (charts, stats, alerts, the overview), ``ingest`` (pushing
usage, /v1/events and /v1/imports, and nothing else: it reads nothing) or ``admin`` (everything:
also quotas, quota rules, the quota audit and pushing). Each route declares the role it needs where it is
declared in app.py (``@endpoint(role="read")``, chalicelib/api/http.py); a route that declares
none needs ``read`` for GET and ``admin`` for anything else, so a new write is never open to a
read key. The documentation, the dashboard page and ``/v1/health`` declare ``public``; the
dashboard asks its user for a key and calls the API with it.

Answers, as ``{"error": {"code", "message"}}`` (chalicelib/api/http.py, error_response):

- 401 ``unauthorized``: no key, or a key that is not configured;
- 403 ``forbidden``: a read key on an admin or ingest route, an ingest key on any other;
- 429 ``throttled`` with ``Retry-After`` (whole seconds): the key's or the API's limit is spent.

Keys come, in AWS, from the SSM key registry under ``API_KEYS_PARAMETER_PATH`` (one
SecureString per key holding its SHA-256 digest and role, re-read every
``SECRETS_MAX_AGE_SECONDS``; see chalicelib/core/secrets.py and scripts/keys.py), and in local
runs from ``API_KEYS`` (``KEY:ROLE,...``; a key may be given as ``sha256:HEX``). Only digests
are kept; logs name a key by the first eight hex digits of its SHA-256 (``key#1a2b3c4d``),
never by the key. With no keys configured, the ``dev`` stage run *locally* (no
``AWS_LAMBDA_FUNCTION_NAME``) is open and says so; everywhere else, a deployed dev stage
included, every protected request is refused with 401 and the log says why: it fails closed.
A registry that cannot be read (and was never read) answers 503, never open.

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
- this function still maps the key to its role (the SSM registry), which is what answers 403
  for a read key on an admin route;
- CORS preflights (OPTIONS) are routed to this function by the CloudFormation template and
  answered here (``preflight_response``), so every allowed origin gets its own answer.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from chalicelib.api.http import ADMIN, INGEST, PUBLIC, READ, error_response
from chalicelib.core import observability

log = logging.getLogger(__name__)

# The route roles each key role may call: an ingest key pushes and reads nothing, a read key
# reads and pushes nothing, an admin key does everything.
_MAY_CALL = {READ: {READ}, INGEST: {INGEST}, ADMIN: {READ, INGEST, ADMIN}}
_CONTEXT_KEY = "bandwidth_meter_access"
# The app's route table (Chalice's ``app.routes``): path -> method -> entry whose view_function
# carries the role ``endpoint`` declared.
Routes = Mapping[str, Mapping[str, Any]]


def declared_role(method: str, view: Optional[Callable]) -> str:
    """The role a view declared, or the default: ``read`` for GET, ``admin`` for anything else."""
    role = getattr(view, "role", None)
    return role or (READ if method == "GET" else ADMIN)


def required_role(method: str, route: str, routes: Optional[Routes] = None) -> Optional[str]:
    """The role a request needs, or None for a public route. A route the table does not hold
    (or no table) gets the default for its method."""
    if method == "OPTIONS":
        return None  # CORS preflights cannot carry the key
    entry = (routes or {}).get(route, {}).get(method)
    role = declared_role(method, getattr(entry, "view_function", None))
    return None if role == PUBLIC else role


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
    """``keys`` is a mapping of SHA-256 digest -> role, or a key source with ``current()``
    (chalicelib/core/secrets.py: ``StaticKeys`` from API_KEYS, ``ParameterKeys`` from SSM).
    ``local`` says the code runs on a developer's machine or in tests: only there, and only
    in the dev stage with no keys at all, is the API open."""

    def __init__(self, keys, stage: str = "dev", throttle: Optional[Throttle] = None, local: bool = True,
                 routes: Optional[Routes] = None):
        from chalicelib.core.secrets import StaticKeys

        self.key_source = keys if hasattr(keys, "current") else StaticKeys(keys)
        self.stage = stage
        self.local = local
        self.throttle = throttle
        self.routes = routes  # the roles routes declared; the middleware passes the app's table

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], float] = time.monotonic,
                      parameter_store: Optional[Callable[[], Any]] = None,
                      routes: Optional[Routes] = None) -> "AccessGuard":
        """Keys from the SSM registry when ``API_KEYS_PARAMETER_PATH`` is set (AWS), otherwise
        from ``API_KEYS`` (local runs). ``parameter_store`` gives the (cached) Parameter Store
        reader; one is built from the settings when not given."""
        from chalicelib.core.secrets import ParameterKeys, ParameterStore

        throttle = (Throttle(settings.throttle_per_key_per_minute, settings.throttle_per_second, clock)
                    if settings.throttle_enabled else None)
        keys: object
        if settings.key_registry_path:
            reader = (parameter_store() if parameter_store else
                      ParameterStore(_ssm_client(settings), max_age=settings.secrets_max_age_seconds))
            keys = ParameterKeys(reader, settings.key_registry_path)
        else:
            keys = dict(settings.api_keys)
        guard = cls(keys, settings.stage, throttle, local=not settings.in_lambda, routes=routes)
        try:
            line, closed = guard.describe(), guard.closed_reason() is not None
        except Exception as e:  # the registry is unreadable now; each request will say so
            line, closed = f"keys from {guard.key_source.source} unreadable: {e}", True
        (log.warning if closed or guard.open else log.info)("access: %s", line)
        return guard

    @property
    def keys(self) -> Dict[str, str]:
        return self.key_source.current()

    @property
    def open(self) -> bool:
        from chalicelib.core.secrets import StaticKeys

        return (self.local and self.stage == "dev" and isinstance(self.key_source, StaticKeys)
                and not self.key_source.current())

    def closed_reason(self) -> Optional[str]:
        """Why every request is refused, or None when keys exist (or the API is open)."""
        if self.open or self.keys:
            return None
        where = "locally" if self.local else "in AWS"
        return (f"no API keys in {self.key_source.source} for stage {self.stage!r} ({where}), "
                f"so it accepts no requests")

    def describe(self) -> str:
        """One line for the start-up banner and the log."""
        keys = self.keys
        if keys:
            roles = sorted(keys.values())
            ingest = f"{roles.count(INGEST)} ingest, " if INGEST in roles else ""
            access = (f"{len(roles)} API keys ({roles.count(READ)} read, {ingest}{roles.count(ADMIN)} admin) "
                      f"from {self.key_source.source}")
        elif self.open:
            access = "OPEN: no API_KEYS are configured, so the dev stage accepts requests without a key"
        else:
            access = f"CLOSED: {self.closed_reason()}; every API request gets 401"
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
        try:
            keys = self.keys
        except Exception as e:  # the registry cannot be read and nothing is cached: fail closed
            log.error("access: the API key registry %s cannot be read: %s", self.key_source.source, e)
            return None, Denial(503, "backend_unavailable", "the API key registry is unavailable; try again shortly")
        if not keys:
            return None, Denial(401, "unauthorized", f"this API has no keys configured for stage "
                                                     f"{self.stage!r}, so it accepts no requests")
        if not api_key:
            return None, Denial(401, "unauthorized", "an API key is required: send it in the x-api-key header")
        digest = key_digest(api_key)
        role = keys.get(digest)
        if role is None and hasattr(self.key_source, "reread"):
            try:  # perhaps added or rotated since the registry was read
                role = self.key_source.reread().get(digest)
            except Exception as e:
                log.warning("access: re-reading the API key registry failed: %s", e)
        if role is None:
            return Caller(digest, ""), Denial(401, "unauthorized", "the API key is not valid")
        return Caller(digest, role), None

    def check(self, method: str, route: str, api_key: Optional[str]) -> Tuple[Optional[Caller], Optional[Denial]]:
        """Whether a request may proceed: (caller, None) or (caller or None, denial)."""
        needed = required_role(method, route, self.routes)
        if needed is None:
            return None, None
        caller, denial = self.authenticate(api_key)
        if denial or caller is None:  # never both None; if it were, refuse rather than admit
            return caller, denial or Denial(401, "unauthorized", "an API key is required")
        if needed not in _MAY_CALL.get(caller.role, ()):
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
    def guard(self, event, get_response, routes: Optional[Routes] = None):
        """The middleware; ``routes`` is the app's route table, whose views declare their roles."""
        if routes is not None:
            self.routes = routes
        if event is None:  # not a routed request; Chalice answers it itself
            return get_response(event)
        route = (event.context or {}).get("resourcePath") or event.path
        if event.method == "OPTIONS":
            return preflight_response()
        caller, denial = self.check(event.method, route, presented_key(event))
        if denial is None:
            if caller is not None:
                event.context[_CONTEXT_KEY] = caller
            return get_response(event)
        who = caller.name if caller else "no key"
        observability.request_refused(event.method, route, denial.status, denial.code, who,
                                      denial.retry_after if denial.status == 429 else None, logger=log,
                                      reason=denial.message)
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


def is_admin(request) -> bool:
    """Whether the request came with an admin key (or the open dev stage, where all are admin).
    Routes open to read keys use it to leave out what only admins may see (webhook URLs)."""
    caller = ((getattr(request, "context", None) or {}).get(_CONTEXT_KEY))
    return caller is not None and caller.role == ADMIN


def preflight_response():
    """The answer to a CORS preflight. In AWS the template routes OPTIONS to this function
    (Chalice's mock integration can name only one origin); the CORS middleware then adds
    ``Access-Control-Allow-Origin`` for an allowed origin, and nothing for any other."""
    from chalice import Response

    return Response(body="", status_code=204, headers={
        "Access-Control-Allow-Methods": PREFLIGHT_METHODS,
        "Access-Control-Allow-Headers": PREFLIGHT_HEADERS,
        "Access-Control-Max-Age": "600",
    })


PREFLIGHT_METHODS = "GET,PUT,POST,DELETE,OPTIONS"
PREFLIGHT_HEADERS = "x-api-key,Content-Type,Accept"


def _ssm_client(settings):
    import boto3

    return boto3.session.Session(region_name=settings.region).client("ssm", endpoint_url=settings.aws_endpoint_url)


def startup_notice(settings) -> str:
    """The access line for a start-up banner (the local runtime prints it)."""
    return AccessGuard.from_settings(settings).describe()
