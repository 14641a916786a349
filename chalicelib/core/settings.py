"""Configuration, read once from the environment into a typed, immutable object.

Every setting is declared once, as a field of ``Settings``: its variable, parser (with its
bounds) and default, in the ``setting(...)`` call that declares the field. ``from_env`` builds
the object from those declarations; nothing else reads these variables. Every variable is
documented in README.md (Configuration; tests/unit/test_settings.py holds the two together).
Required values that are missing fail fast with a message naming the variable; optional ones
have defaults that suit a production deployment.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, NoReturn, Optional, Sequence, Tuple


class ConfigError(Exception):
    """A setting is missing or malformed."""


KONG_SCHEMAS = ("auto", "2", "3.0", "3.7")
GATEWAYS = ("kong", "apisix", "traefik", "envoy")  # chalicelib/collect/gateways.py: one schema each
MAX_SHARDS = 64  # collector shards; about 1,000-1,500 services each (README, Scaling out)
API_ROLES = ("read", "ingest", "admin")
_HASHED_KEY = "sha256:"
LAMBDA_MARKER = "AWS_LAMBDA_FUNCTION_NAME"  # set by Lambda in every function's environment

# Variables documented with the settings but read by the program that uses them, not by the
# functions: the local runtime, the logging and metrics set-up, the command-line client.
OTHER_VARIABLES = {
    "COLLECT_INTERVAL": "localrun/runtime.py",
    "API_PORT": "localrun/runtime.py",
    "LOG_LEVEL": "chalicelib/core/observability.py",
    "POWERTOOLS_SERVICE_NAME": "chalicelib/core/observability.py",
    "BWMETER_URL": "bwmeter/cli.py",
    "BWMETER_API_KEY": "bwmeter/cli.py",
}


# -- parsers: (variable, text) -> value; the text is stripped and never blank ----------------
Parser = Callable[[str, str], Any]


def text(name: str, raw: str) -> str:
    return raw


def base_url(name: str, raw: str) -> Optional[str]:
    return raw.rstrip("/") or None


def url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


def integer(minimum: int = 0, maximum: Optional[int] = None) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}")
        return value

    return parse


def boolean(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def even_divisor_of_a_day(name: str, raw: str) -> int:
    """Minutes that divide a day, so every UTC midnight (where quota periods end) is one of their
    multiples, and are even, so every multiple is an even minute: 2, 4, 6, 8, 10, 12, ..."""
    value: int = integer(minimum=2, maximum=1440)(name, raw)
    if value % 2 or 1440 % value:
        raise ConfigError(f"{name} must be an even number of minutes that divides a day (2, 4, 6, 8, 10, "
                          f"12, 16, 20, 30, 60, ...), got {value}")
    return value


def one_of(choices: Sequence[str]) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    return parse


def items(name: str, raw: str) -> Optional[Tuple[str, ...]]:
    """Comma-separated values; none at all counts as unset."""
    return tuple(part.strip() for part in raw.split(",") if part.strip()) or None


def networks(name: str, raw: str) -> Optional[Tuple[str, ...]]:
    """CIDRs, checked now so a typo fails at start-up rather than when an alert is sent."""
    cidrs = items(name, raw) or ()
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated CIDRs such as 10.1.0.0/16, got {cidr!r}") from None
    return cidrs or None


def gateway_names(name: str, raw: str) -> Optional[Tuple[str, ...]]:
    """GATEWAY: one or more of the gateway schemas, comma-separated; an unknown name fails now,
    not as a collector that silently reads nothing."""
    chosen: List[str] = []
    for gateway in items(name, raw) or ():
        if gateway.lower() not in GATEWAYS:
            raise ConfigError(f"{name} must be one or more of {', '.join(GATEWAYS)} (comma-separated), "
                              f"got {gateway!r}")
        if gateway.lower() not in chosen:
            chosen.append(gateway.lower())
    return tuple(chosen) or None


def present(name: str, raw: str) -> bool:
    return True


def parameter_name(name: str, raw: str) -> str:
    if not raw.startswith("/"):
        raise ConfigError(f"{name} must be an SSM parameter name starting with '/', got {raw!r}")
    return raw


def workspace(name: str, raw: str) -> str:
    """KONG_WORKSPACE becomes a path segment of every Admin API call: a name, nothing to escape."""
    if not all(c.isalnum() or c in "-_.~" for c in raw):
        raise ConfigError(f"{name} must be a workspace name (letters, digits, - _ . ~), got {raw!r}")
    return raw


def api_keys(name: str, raw: str) -> Tuple[Tuple[str, str], ...]:
    """API_KEYS: ``KEY:ROLE,...`` (role read or admin); KEY may be ``sha256:HEX`` so that the
    configuration holds no usable key. Only SHA-256 digests are kept, never the keys, and
    error messages name an entry by its position, never by its text."""
    keys: Dict[str, str] = {}
    for position, entry in enumerate(items(name, raw) or (), start=1):
        key, sep, role = entry.rpartition(":")
        if not sep or not key:
            raise ConfigError(f"{name} entry {position} is not KEY:ROLE (ROLE is read, ingest or admin)")
        if role not in API_ROLES:
            raise ConfigError(f"{name} entry {position} has role {role!r}; use read, ingest or admin")
        if key.startswith(_HASHED_KEY):
            digest = key[len(_HASHED_KEY):].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{name} entry {position}: sha256: must be followed by 64 hex digits")
        else:
            digest = hashlib.sha256(key.encode()).hexdigest()
        if keys.get(digest, role) != role:
            raise ConfigError(f"{name} entry {position} repeats a key with a different role")
        keys[digest] = role
    return tuple(sorted(keys.items()))


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
    matchers: List[Tuple[str, str, str]] = []
    i = 0

    def fail(why: str) -> NoReturn:
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
        chars: List[str] = []
        i += 1
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
                chars.append(_ESCAPES[escaped])
                i += 2
                continue
            if ord(c) < 32:
                fail(f"the value of {label} holds a control character")
            chars.append(c)
            i += 1
        value = "".join(chars)
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


def series_selector(name: str, raw: str) -> Optional[str]:
    """PROMETHEUS_SERIES_SELECTOR, checked and re-rendered: label matchers (no braces) that every
    query the collector makes carries, so only the configured gateways' series count."""
    return render_matchers(parse_series_selector(raw, name)) or None


# -- declarations ------------------------------------------------------------------------------
class Where(NamedTuple):
    """Where the code runs, which some defaults depend on."""

    stage: str
    in_lambda: bool

    @property
    def local_dev(self) -> bool:
        return self.stage == "dev" and not self.in_lambda


@dataclass(frozen=True)
class Declaration:
    variable: str
    parse: Parser
    default: Any = None
    default_where: Optional[Callable[[Where], Any]] = None  # a default that depends on where it runs
    also: Tuple[str, ...] = ()  # variables read, in order, when ``variable`` is unset
    required: Optional[str] = None  # the message when it is unset
    secret: bool = False  # in Lambda it must come from Parameter Store, named by this variable
    secret_parameter: Optional[str] = None

    @property
    def variables(self) -> Tuple[str, ...]:
        return (self.variable,) + self.also


_DECLARED = "bandwidth_meter_setting"


def setting(variable: str, parse: Parser = text, default: Any = None, *,
            default_where: Optional[Callable[[Where], Any]] = None, also: Tuple[str, ...] = (),
            required: Optional[str] = None, parameter: Optional[str] = None, hidden: bool = False) -> Any:
    """Declare a ``Settings`` field: the variable it comes from, how its text is parsed (and
    bounded), and its default. ``parameter`` names the variable that, in Lambda, must replace a
    secret (the SSM parameter holding it); ``hidden`` keeps the value out of ``repr``."""
    declaration = Declaration(variable, parse, default, default_where, also, required,
                              secret=parameter is not None, secret_parameter=parameter)
    metadata = {_DECLARED: declaration}
    if required is not None:
        return field(metadata=metadata, repr=not hidden)
    return field(default=default, metadata=metadata, repr=not hidden)


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: field, variable, parser and bounds, default."""

    table_name: str = setting(
        "TABLE_NAME",
        required="TABLE_NAME is not set: name the DynamoDB table (see README.md, Configuration)")
    region: str = setting("AWS_REGION", also=("AWS_DEFAULT_REGION",),
                          required="AWS_REGION (or AWS_DEFAULT_REGION) is not set")
    stage: str = setting("STAGE", default="dev")
    # Where the code runs: inside Lambda nothing runs open (Settings.local_dev).
    in_lambda: bool = setting(LAMBDA_MARKER, present, False)
    aws_endpoint_url: Optional[str] = setting("AWS_ENDPOINT_URL")
    # Prometheus (collector only)
    prometheus_url: Optional[str] = setting("PROMETHEUS_URL", base_url)
    prometheus_username: Optional[str] = setting("PROMETHEUS_USERNAME")
    prometheus_password: Optional[str] = setting("PROMETHEUS_PASSWORD", parameter="PROMETHEUS_PASSWORD_PARAMETER")
    prometheus_bearer_token: Optional[str] = setting("PROMETHEUS_BEARER_TOKEN",
                                                     parameter="PROMETHEUS_BEARER_TOKEN_PARAMETER")
    prometheus_sigv4_region: Optional[str] = setting("PROMETHEUS_SIGV4_REGION")
    prometheus_timeout_seconds: int = setting("PROMETHEUS_TIMEOUT_SECONDS", integer(minimum=1), 10)
    # Which gateways' bandwidth series are read (chalicelib/collect/gateways.py), one or several
    gateways: Tuple[str, ...] = setting("GATEWAY", gateway_names, ("kong",))
    kong_schema: str = setting("KONG_SCHEMA", one_of(KONG_SCHEMAS), "auto")
    replica_labels: Tuple[str, ...] = setting("PROMETHEUS_REPLICA_LABELS", items, ())
    # Only the configured gateways' series count (a shared Prometheus scrapes other targets too)
    prometheus_series_selector: Optional[str] = setting("PROMETHEUS_SERIES_SELECTOR", series_selector)
    # Collection windows
    collect_lag_seconds: int = setting("COLLECT_LAG_SECONDS", integer(), 60)
    initial_backfill_minutes: int = setting("INITIAL_BACKFILL_MINUTES", integer(), 0)
    max_backfill_minutes: int = setting("MAX_BACKFILL_MINUTES", integer(minimum=1), 1440)
    chunk_minutes: int = setting("COLLECT_CHUNK_MINUTES", integer(minimum=1), 15)
    series_lookback_seconds: int = setting("SERIES_LOOKBACK_SECONDS", integer(minimum=60), 3600)
    late_sample_seconds: int = setting("LATE_SAMPLE_SECONDS", integer(), 120)
    unobserved_gap_minutes: int = setting("UNOBSERVED_GAP_MINUTES", integer(minimum=1), 5)
    minute_ttl_days: int = setting("MINUTE_TTL_DAYS", integer(minimum=1), 35)
    collect_traffic_stats: bool = setting("COLLECT_TRAFFIC_STATS", boolean, True)
    # How often every consumer has its period item written (collect/consumers.py); one with a
    # quota also at the even minute its bytes may reach a threshold, and one consumer's page adds
    # the minutes since. 20 in AWS keeps a consumer spread over 8 shards within the write budget
    # (bench/RESULTS.md); locally every other minute, so a newcomer watches the figures move.
    consumer_write_minutes: int = setting("CONSUMER_WRITE_MINUTES", even_divisor_of_a_day,
                                          default_where=lambda w: 2 if w.local_dev else 20)
    # Scaling out (chalicelib/collect/shards.py). Each shard is a Lambda invocation a minute: a
    # typo must not start thousands (the template's ShardCount has the same bound).
    shard_count: int = setting("SHARD_COUNT", integer(minimum=1, maximum=MAX_SHARDS), 1)
    # batch writes in flight per invocation
    write_workers: int = setting("COLLECT_WRITE_WORKERS", integer(minimum=1, maximum=32), 4)
    # the worker function the schedule invokes, N > 1
    collect_shard_function: Optional[str] = setting("COLLECT_SHARD_FUNCTION")
    # Alerts
    alert_from: Optional[str] = setting("ALERT_FROM")
    public_url: str = setting("PUBLIC_URL", base_url, "http://127.0.0.1:8000")
    webhook_secret: Optional[str] = setting("WEBHOOK_SECRET", parameter="WEBHOOK_SECRET_PARAMETER")
    # Enforcement (chalicelib/enforce/): off unless the Kong Admin API URL is set
    kong_admin_url: Optional[str] = setting("KONG_ADMIN_URL", url)
    kong_admin_token: Optional[str] = setting("KONG_ADMIN_TOKEN", parameter="KONG_ADMIN_TOKEN_PARAMETER",
                                              hidden=True)
    kong_workspace: Optional[str] = setting("KONG_WORKSPACE", workspace)
    kong_admin_timeout_seconds: int = setting("KONG_ADMIN_TIMEOUT_SECONDS", integer(minimum=1), 5)
    # In AWS the Admin API is reached over TLS unless the operator says plain HTTP is intended
    kong_admin_allow_http: bool = setting("KONG_ADMIN_ALLOW_HTTP", boolean, False)
    # internal networks the operator lets webhooks reach where they are strict (in AWS) (core/webhook_targets.py)
    webhook_allowed_networks: Tuple[str, ...] = setting("WEBHOOK_ALLOWED_NETWORKS", networks, ())
    # API: '*' only in the dev stage run locally (checked in from_env)
    cors_origins: Tuple[str, ...] = setting("CORS_ORIGINS", items, default_where=lambda w: ("*",) if w.local_dev else ())
    # API access (chalicelib/api/access.py): (SHA-256 hex digest of a key, role) pairs
    api_keys: Tuple[Tuple[str, str], ...] = setting("API_KEYS", api_keys, (), parameter="API_KEYS_PARAMETER_PATH",
                                                    hidden=True)
    # In Lambda, API Gateway's usage plan throttles; a per-instance count would be partial.
    throttle_enabled: bool = setting("THROTTLE_ENABLED", boolean, default_where=lambda w: not w.in_lambda)
    throttle_per_key_per_minute: int = setting("THROTTLE_PER_KEY_PER_MINUTE", integer(minimum=1), 600)
    throttle_per_second: int = setting("THROTTLE_PER_SECOND", integer(minimum=1), 50)
    # Secrets in AWS (chalicelib/core/secrets.py): SSM parameter *names*, never the values.
    key_registry_path: Optional[str] = setting("API_KEYS_PARAMETER_PATH", parameter_name)
    prometheus_password_parameter: Optional[str] = setting("PROMETHEUS_PASSWORD_PARAMETER", parameter_name)
    prometheus_bearer_token_parameter: Optional[str] = setting("PROMETHEUS_BEARER_TOKEN_PARAMETER", parameter_name)
    webhook_secret_parameter: Optional[str] = setting("WEBHOOK_SECRET_PARAMETER", parameter_name)
    kong_admin_token_parameter: Optional[str] = setting("KONG_ADMIN_TOKEN_PARAMETER", parameter_name)
    secrets_max_age_seconds: int = setting("SECRETS_MAX_AGE_SECONDS", integer(minimum=1), 300)

    @property
    def local_dev(self) -> bool:
        """The dev stage on a developer's machine or in tests: the only place that may run open."""
        return self.stage == "dev" and not self.in_lambda

    def require(self, name: str) -> str:
        """Return a setting a function cannot run without, or fail naming its variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"{name.upper()} is not set; it is required here (see README.md, Configuration)")
        return str(value)

    def public_summary(self) -> Dict[str, Any]:
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


def declarations() -> Iterator[Tuple[str, Declaration]]:
    """(field name, declaration) of every setting, in declaration order."""
    for f in dataclasses.fields(Settings):
        yield f.name, f.metadata[_DECLARED]


def variables() -> Tuple[str, ...]:
    """Every variable a setting is read from."""
    return tuple(name for _, declaration in declarations() for name in declaration.variables)


def _text(env: Mapping[str, str], declaration: Declaration) -> Tuple[str, Optional[str]]:
    """(the variable that holds the value, its stripped text), or (variable, None) when unset."""
    for name in declaration.variables:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return name, value.strip()
    return declaration.variable, None


def _value(env: Mapping[str, str], declaration: Declaration, where: Optional[Where]) -> Any:
    name, raw = _text(env, declaration)
    value = None if raw is None else declaration.parse(name, raw)
    if value is not None:
        return value
    if declaration.required is not None:
        raise ConfigError(declaration.required)
    if declaration.default_where is not None and where is not None:
        return declaration.default_where(where)
    return declaration.default


def _declaration(field_name: str) -> Declaration:
    declaration: Declaration = Settings.__dataclass_fields__[field_name].metadata[_DECLARED]
    return declaration


def running_in_lambda(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is a Lambda function, i.e. runs in AWS (the one place that decides
    it). Every dev-only relaxation depends on this being false, never on a stage's name."""
    return bool(_value(env, _declaration("in_lambda"), None))


def _refuse_plain_secrets(env: Mapping[str, str]) -> None:
    """In Lambda a secret in a plain variable is readable by anyone who can read the function's
    configuration; fail fast and name the variable that should replace it."""
    for _, declaration in declarations():
        if not declaration.secret:
            continue
        name, value = _text(env, declaration)
        if value is None:
            continue
        if name == "API_KEYS" and all(entry.startswith(_HASHED_KEY) for entry in items(name, value) or ()):
            continue  # digests only: no usable key, though SSM is where keys rotate without a deploy
        raise ConfigError(f"{name} is set in a deployed function's environment; keep secrets in "
                          f"SSM Parameter Store and set {declaration.secret_parameter} instead (docs/deploy.md)")


# Secrets that in AWS must come from Parameter Store, and the variable that names the parameter.
PLAIN_SECRETS = {d.variable: d.secret_parameter for _, d in declarations() if d.secret}


def from_env(env: Mapping[str, str] = os.environ) -> Settings:
    """The settings from these variables (the process's environment unless given: the local
    runtime and tests pass a mapping of their own)."""
    values: Dict[str, Any] = {}
    for name in ("table_name", "region", "stage", "in_lambda"):
        values[name] = _value(env, _declaration(name), None)
    where = Where(values["stage"], values["in_lambda"])
    if where.in_lambda:
        _refuse_plain_secrets(env)
    for name, declaration in declarations():
        if name not in values:
            values[name] = _value(env, declaration, where)
    if "*" in values["cors_origins"] and not where.local_dev:
        raise ConfigError("CORS_ORIGINS may be '*' only in the dev stage run locally, never when deployed")
    kong_admin_url = values["kong_admin_url"]
    if where.in_lambda and kong_admin_url and kong_admin_url.startswith("http://") and not values["kong_admin_allow_http"]:
        # The Admin API carries the Kong-Admin-Token and changes the gateway.
        raise ConfigError("KONG_ADMIN_URL is http:// in a deployed function: the Admin token and the blocks would "
                          "travel in clear text; use https://, or set KONG_ADMIN_ALLOW_HTTP=true if the network "
                          "path is private (docs/deploy.md)")
    return Settings(**values)
