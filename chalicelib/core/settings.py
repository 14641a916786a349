"""Configuration, read once from the environment into a typed object.

Every setting has one name, documented in README.md. Required values that are
missing fail fast with a message naming the variable; optional ones have
defaults that suit a production deployment.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple


class ConfigError(Exception):
    """A setting is missing or malformed."""


def _get(env: Mapping[str, str], name: str, default: Optional[str] = None) -> Optional[str]:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: Optional[int] = None) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> Tuple[str, ...]:
    raw = _get(env, name, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _networks(env: Mapping[str, str], name: str) -> Tuple[str, ...]:
    """CIDRs, checked now so a typo fails at start-up rather than when an alert is sent."""
    import ipaddress

    networks = _list(env, name)
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated CIDRs such as 10.1.0.0/16, got {cidr!r}") from None
    return networks


KONG_SCHEMAS = ("auto", "2", "3.0", "3.7")
MAX_SHARDS = 64  # collector shards; about 1,000-1,500 services each (README, Scaling out)
API_ROLES = ("read", "admin")
_HASHED_KEY = "sha256:"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _api_keys(env: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """API_KEYS: ``KEY:ROLE,...`` (role read or admin); KEY may be ``sha256:HEX`` so that the
    configuration holds no usable key. Only SHA-256 digests are kept, never the keys, and
    error messages name an entry by its position, never by its text."""
    keys = {}
    for position, entry in enumerate(_list(env, "API_KEYS"), start=1):
        key, sep, role = entry.rpartition(":")
        if not sep or not key:
            raise ConfigError(f"API_KEYS entry {position} is not KEY:ROLE (ROLE is read or admin)")
        if role not in API_ROLES:
            raise ConfigError(f"API_KEYS entry {position} has role {role!r}; use read or admin")
        if key.startswith(_HASHED_KEY):
            digest = key[len(_HASHED_KEY):].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"API_KEYS entry {position}: sha256: must be followed by 64 hex digits")
        else:
            digest = hashlib.sha256(key.encode()).hexdigest()
        if keys.get(digest, role) != role:
            raise ConfigError(f"API_KEYS entry {position} repeats a key with a different role")
        keys[digest] = role
    return tuple(sorted(keys.items()))


# Secrets that in AWS must come from Parameter Store, and the variable that names the parameter.
PLAIN_SECRETS = {
    "API_KEYS": "API_KEYS_PARAMETER_PATH",
    "PROMETHEUS_PASSWORD": "PROMETHEUS_PASSWORD_PARAMETER",
    "PROMETHEUS_BEARER_TOKEN": "PROMETHEUS_BEARER_TOKEN_PARAMETER",
    "WEBHOOK_SECRET": "WEBHOOK_SECRET_PARAMETER",
    "KONG_ADMIN_TOKEN": "KONG_ADMIN_TOKEN_PARAMETER",
}


def _refuse_plain_secrets(env: Mapping[str, str]) -> None:
    """In Lambda a secret in a plain variable is readable by anyone who can read the function's
    configuration; fail fast and name the variable that should replace it."""
    for name, replacement in PLAIN_SECRETS.items():
        value = _get(env, name)
        if name == "API_KEYS" and value is not None and all(
                entry.startswith(_HASHED_KEY) for entry in _list(env, name)):
            continue  # digests only: no usable key, though SSM is where keys rotate without a deploy
        if value is not None:
            raise ConfigError(f"{name} is set in a deployed function's environment; keep secrets in "
                              f"SSM Parameter Store and set {replacement} instead (docs/deploy.md)")


def _parameter_name(env: Mapping[str, str], name: str) -> Optional[str]:
    value = _get(env, name)
    if value is not None and not value.startswith("/"):
        raise ConfigError(f"{name} must be an SSM parameter name starting with '/', got {value!r}")
    return value


def _url(env: Mapping[str, str], name: str) -> Optional[str]:
    value = _get(env, name)
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCH_OPS = ("=~", "!~", "!=", "=")  # two-character operators first
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


def parse_series_selector(text: str, name: str = "PROMETHEUS_SERIES_SELECTOR") -> Tuple[Tuple[str, str, str], ...]:
    """Label matchers ``name op "value"`` (op = != =~ !~), comma-separated, optionally in braces,
    as (label, op, value) triples. The text is spliced into every Prometheus query, so nothing
    else is accepted: no metric name, no ``__name__`` (the collector picks its metrics), no
    functions, single quotes or backticks; regular expressions must compile."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, i = [], 0

    def fail(why: str):
        raise ConfigError(f"{name} must be PromQL label matchers such as {{job=\"kong\"}} or "
                          f"job=\"kong\",env=~\"prod|eu\": {why}")

    def skip_space(at: int) -> int:
        while at < len(body) and body[at] in " \t":
            at += 1
        return at

    while True:
        i = skip_space(i)
        found = _LABEL_NAME.match(body, i)
        if not found:
            fail(f"expected a label name at character {i + 1}")
        label, i = found.group(0), skip_space(found.end())
        if label.startswith("__"):
            fail(f"{label} is reserved (the collector chooses the metric names)")
        op = next((o for o in _MATCH_OPS if body.startswith(o, i)), None)
        if op is None:
            fail(f"expected =, !=, =~ or !~ after {label}")
        i = skip_space(i + len(op))
        if i >= len(body) or body[i] != '"':
            fail(f"the value of {label} must be in double quotes")
        value, i = [], i + 1
        while True:
            if i >= len(body):
                fail(f"the value of {label} has no closing quote")
            c = body[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                escaped = body[i + 1:i + 2]
                if escaped not in _ESCAPES:
                    fail(f"the value of {label} has an unknown escape \\{escaped}; use \\\\ for a backslash")
                value.append(_ESCAPES[escaped])
                i += 2
                continue
            if ord(c) < 32:
                fail(f"the value of {label} holds a control character")
            value.append(c)
            i += 1
        value = "".join(value)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as e:
                fail(f"the regular expression of {label} does not compile ({e})")
        matchers.append((label, op, value))
        i = skip_space(i)
        if i == len(body):
            break
        if body[i] != ",":
            fail(f"expected a comma or the end at character {i + 1}")
        i += 1
        if skip_space(i) == len(body):
            break  # a trailing comma, as PromQL allows
    return tuple(matchers)


def render_matchers(matchers: Tuple[Tuple[str, str, str], ...]) -> str:
    """Matchers as PromQL text (without braces), every value re-quoted here: nothing of the
    operator's text but a checked label name and an escaped string reaches a query."""
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'

    return ",".join(f"{label}{op}{quoted(value)}" for label, op, value in matchers)


def _series_selector(env: Mapping[str, str]) -> Optional[str]:
    raw = _get(env, "PROMETHEUS_SERIES_SELECTOR")
    if raw is None:
        return None
    return render_matchers(parse_series_selector(raw)) or None


def running_in_aws(env: Mapping[str, str] = os.environ) -> bool:
    """The one test of where the code runs: Lambda sets AWS_LAMBDA_FUNCTION_NAME. Every
    dev-only relaxation depends on this being false, never on a stage's name."""
    return _get(env, "AWS_LAMBDA_FUNCTION_NAME") is not None


def _kong_admin_url(env: Mapping[str, str], in_lambda: bool) -> Optional[str]:
    """The Admin API carries the Kong-Admin-Token and changes the gateway: in AWS it is reached
    over TLS unless the operator says plain HTTP is intended (a sidecar, a private link)."""
    url = _url(env, "KONG_ADMIN_URL")
    if url is not None and in_lambda and url.startswith("http://") and not _bool(env, "KONG_ADMIN_ALLOW_HTTP", False):
        raise ConfigError("KONG_ADMIN_URL is http:// in a deployed function: the Admin token and the blocks would "
                          "travel in clear text; use https://, or set KONG_ADMIN_ALLOW_HTTP=true if the network "
                          "path is private (docs/deploy.md)")
    return url


def _workspace(env: Mapping[str, str]) -> Optional[str]:
    """KONG_WORKSPACE becomes a path segment of every Admin API call: a name, nothing to escape."""
    value = _get(env, "KONG_WORKSPACE")
    if value is not None and not all(c.isalnum() or c in "-_.~" for c in value):
        raise ConfigError(f"KONG_WORKSPACE must be a workspace name (letters, digits, - _ . ~), got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    table_name: str
    region: str
    stage: str = "dev"
    aws_endpoint_url: Optional[str] = None
    # Prometheus (collector only)
    prometheus_url: Optional[str] = None
    prometheus_username: Optional[str] = None
    prometheus_password: Optional[str] = None
    prometheus_bearer_token: Optional[str] = None
    prometheus_sigv4_region: Optional[str] = None
    prometheus_timeout_seconds: int = 10
    kong_schema: str = "auto"
    replica_labels: Tuple[str, ...] = ()
    # PROMETHEUS_SERIES_SELECTOR, checked and re-rendered: label matchers (no braces) that every
    # query the collector makes carries, so only the configured gateways' series count
    prometheus_series_selector: Optional[str] = None
    # Collection windows
    collect_lag_seconds: int = 60
    initial_backfill_minutes: int = 0
    max_backfill_minutes: int = 1440
    chunk_minutes: int = 15
    series_lookback_seconds: int = 3600
    late_sample_seconds: int = 120
    unobserved_gap_minutes: int = 5
    minute_ttl_days: int = 35
    collect_traffic_stats: bool = True
    # Scaling out (chalicelib/collect/shards.py): shards, and batch writes in flight per invocation
    shard_count: int = 1
    write_workers: int = 4
    collect_shard_function: Optional[str] = None  # the worker function the schedule invokes, N > 1
    # Alerts
    alert_from: Optional[str] = None
    public_url: str = "http://127.0.0.1:8000"
    webhook_secret: Optional[str] = None
    # Enforcement (chalicelib/enforce/): off unless the Kong Admin API URL is set
    kong_admin_url: Optional[str] = None
    kong_admin_token: Optional[str] = field(default=None, repr=False)
    kong_workspace: Optional[str] = None
    kong_admin_timeout_seconds: int = 5
    kong_admin_allow_http: bool = False
    # internal networks the operator lets webhooks reach where they are strict (in AWS) (core/webhook_targets.py)
    webhook_allowed_networks: Tuple[str, ...] = ()
    # API
    cors_origins: Tuple[str, ...] = field(default_factory=tuple)
    # API access (chalicelib/api/access.py): (SHA-256 hex digest of a key, role) pairs
    api_keys: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    throttle_enabled: bool = True
    throttle_per_key_per_minute: int = 600
    throttle_per_second: int = 50
    # Where the code runs: inside Lambda (AWS_LAMBDA_FUNCTION_NAME is set) nothing runs open.
    in_lambda: bool = False
    # Secrets in AWS (chalicelib/core/secrets.py): SSM parameter *names*, never the values.
    key_registry_path: Optional[str] = None
    prometheus_password_parameter: Optional[str] = None
    prometheus_bearer_token_parameter: Optional[str] = None
    webhook_secret_parameter: Optional[str] = None
    kong_admin_token_parameter: Optional[str] = None
    secrets_max_age_seconds: int = 300

    @property
    def local_dev(self) -> bool:
        """The dev stage on a developer's machine or in tests: the only place that may run open."""
        return self.stage == "dev" and not self.in_lambda

    def require(self, name: str) -> str:
        """Return a setting a function cannot run without, or fail naming its variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"{name.upper()} is not set; it is required here (see README.md, Configuration)")
        return value

    def public_summary(self) -> dict:
        """What /v1/health may show: which backends are configured, never secrets. Where the
        stage is public (anything but local dev), not even the table, region or endpoint."""
        if not self.local_dev:
            return {"stage": self.stage}
        return {
            "stage": self.stage,
            "table": self.table_name,
            "region": self.region,
            "aws_endpoint": self.aws_endpoint_url or "aws",
            "prometheus": bool(self.prometheus_url),
            "prometheus_auth": (
                "sigv4" if self.prometheus_sigv4_region
                else "bearer" if self.prometheus_bearer_token
                else "basic" if self.prometheus_username
                else "none"
            ),
            "kong_schema": self.kong_schema,
            "alerts_sender": bool(self.alert_from),
            "kong_admin": bool(self.kong_admin_url),
        }


def from_env(env: Mapping[str, str] = os.environ) -> Settings:
    table = _get(env, "TABLE_NAME")
    if not table:
        raise ConfigError("TABLE_NAME is not set: name the DynamoDB table (see README.md, Configuration)")
    region = _get(env, "AWS_REGION") or _get(env, "AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("AWS_REGION (or AWS_DEFAULT_REGION) is not set")
    schema = _get(env, "KONG_SCHEMA", "auto")
    if schema not in KONG_SCHEMAS:
        raise ConfigError(f"KONG_SCHEMA must be one of {', '.join(KONG_SCHEMAS)}, got {schema!r}")
    stage = _get(env, "STAGE", "dev")
    in_lambda = running_in_aws(env)
    local_dev = stage == "dev" and not in_lambda
    cors = _list(env, "CORS_ORIGINS")
    if "*" in cors and not local_dev:
        raise ConfigError("CORS_ORIGINS may be '*' only in the dev stage run locally, never when deployed")
    if in_lambda:
        _refuse_plain_secrets(env)
    return Settings(
        table_name=table,
        region=region,
        stage=stage,
        aws_endpoint_url=_get(env, "AWS_ENDPOINT_URL"),
        prometheus_url=(_get(env, "PROMETHEUS_URL") or "").rstrip("/") or None,
        prometheus_username=_get(env, "PROMETHEUS_USERNAME"),
        prometheus_password=_get(env, "PROMETHEUS_PASSWORD"),
        prometheus_bearer_token=_get(env, "PROMETHEUS_BEARER_TOKEN"),
        prometheus_sigv4_region=_get(env, "PROMETHEUS_SIGV4_REGION"),
        prometheus_timeout_seconds=_int(env, "PROMETHEUS_TIMEOUT_SECONDS", 10, minimum=1),
        kong_schema=schema,
        replica_labels=_list(env, "PROMETHEUS_REPLICA_LABELS"),
        prometheus_series_selector=_series_selector(env),
        collect_lag_seconds=_int(env, "COLLECT_LAG_SECONDS", 60),
        initial_backfill_minutes=_int(env, "INITIAL_BACKFILL_MINUTES", 0),
        max_backfill_minutes=_int(env, "MAX_BACKFILL_MINUTES", 1440, minimum=1),
        chunk_minutes=_int(env, "COLLECT_CHUNK_MINUTES", 15, minimum=1),
        series_lookback_seconds=_int(env, "SERIES_LOOKBACK_SECONDS", 3600, minimum=60),
        late_sample_seconds=_int(env, "LATE_SAMPLE_SECONDS", 120),
        unobserved_gap_minutes=_int(env, "UNOBSERVED_GAP_MINUTES", 5, minimum=1),
        minute_ttl_days=_int(env, "MINUTE_TTL_DAYS", 35, minimum=1),
        collect_traffic_stats=_bool(env, "COLLECT_TRAFFIC_STATS", True),
        # Each shard is a Lambda invocation a minute: a typo must not start thousands (the
        # template's ShardCount has the same bound).
        shard_count=_int(env, "SHARD_COUNT", 1, minimum=1, maximum=MAX_SHARDS),
        write_workers=_int(env, "COLLECT_WRITE_WORKERS", 4, minimum=1, maximum=32),
        collect_shard_function=_get(env, "COLLECT_SHARD_FUNCTION"),
        alert_from=_get(env, "ALERT_FROM"),
        public_url=(_get(env, "PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/"),
        webhook_secret=_get(env, "WEBHOOK_SECRET"),
        kong_admin_url=_kong_admin_url(env, in_lambda),
        kong_admin_token=_get(env, "KONG_ADMIN_TOKEN"),
        kong_workspace=_workspace(env),
        kong_admin_timeout_seconds=_int(env, "KONG_ADMIN_TIMEOUT_SECONDS", 5, minimum=1),
        kong_admin_allow_http=_bool(env, "KONG_ADMIN_ALLOW_HTTP", False),
        webhook_allowed_networks=_networks(env, "WEBHOOK_ALLOWED_NETWORKS"),
        cors_origins=cors or (("*",) if local_dev else ()),
        api_keys=_api_keys(env),
        # In Lambda, API Gateway's usage plan throttles; a per-instance count would be partial.
        throttle_enabled=_bool(env, "THROTTLE_ENABLED", not in_lambda),
        throttle_per_key_per_minute=_int(env, "THROTTLE_PER_KEY_PER_MINUTE", 600, minimum=1),
        throttle_per_second=_int(env, "THROTTLE_PER_SECOND", 50, minimum=1),
        in_lambda=in_lambda,
        key_registry_path=_parameter_name(env, "API_KEYS_PARAMETER_PATH"),
        prometheus_password_parameter=_parameter_name(env, "PROMETHEUS_PASSWORD_PARAMETER"),
        prometheus_bearer_token_parameter=_parameter_name(env, "PROMETHEUS_BEARER_TOKEN_PARAMETER"),
        webhook_secret_parameter=_parameter_name(env, "WEBHOOK_SECRET_PARAMETER"),
        kong_admin_token_parameter=_parameter_name(env, "KONG_ADMIN_TOKEN_PARAMETER"),
        secrets_max_age_seconds=_int(env, "SECRETS_MAX_AGE_SECONDS", 300, minimum=1),
    )
