"""Secrets and API keys from AWS Systems Manager Parameter Store (SecureString).

In AWS nothing secret sits in a function's environment: the environment names *parameters*
(``PROMETHEUS_PASSWORD_PARAMETER``, ``PROMETHEUS_BEARER_TOKEN_PARAMETER``,
``WEBHOOK_SECRET_PARAMETER``) and the path of the API key registry
(``API_KEYS_PARAMETER_PATH``, e.g. ``/bandwidth-meter/prod/api-keys``). Local runs keep the
plain variables (``PROMETHEUS_PASSWORD``, ``API_KEYS``, ...).

The key registry holds one SecureString parameter per key, ``<path>/<name>``, whose value is
``{"role": "read"|"admin", "sha256": "<hex digest of the key>", "api_key_id": "<API Gateway id>"}``:
the registry holds no usable key, only what the function needs to tell a key's role.
``scripts/keys.py`` (``make keys``) and the CloudFormation stack's key resource write it.

Values are fetched once and cached for ``max_age`` seconds (``SECRETS_MAX_AGE_SECONDS``,
5 minutes by default), so a cold start costs one call and a rotated or revoked key takes
effect within that interval without a deployment. boto3 directly rather than Powertools'
Parameters utility: it is the whole need in sixty lines, and the package stays small.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Dict, Mapping, Optional, Tuple

from chalicelib.core.settings import API_ROLES, ConfigError

log = logging.getLogger(__name__)


class SecretsError(ConfigError):
    """Parameter Store could not give a secret this function needs."""


class ParameterStore:
    """A cached reader of SecureString parameters; ``client`` is a boto3 SSM client."""

    def __init__(self, client, max_age: float = 300, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: Dict[Tuple[str, str], Tuple[float, object]] = {}

    def _cached(self, kind: str, name: str, fetch: Callable[[], object], max_age: Optional[float] = None):
        now = self.clock()
        max_age = self.max_age if max_age is None else max_age
        with self._lock:
            hit = self._cache.get((kind, name))
            if hit is not None and now - hit[0] < max_age:
                return hit[1]
        try:
            value = fetch()
        except Exception as e:  # botocore's ClientError / BotoCoreError: translated at the edge
            if hit is not None:  # keep serving what we had rather than fail every request
                log.warning("secrets: refreshing %s failed (%s); using the value fetched %.0f s ago",
                            name, type(e).__name__, now - hit[0])
                return hit[1]
            raise SecretsError(f"could not read {name} from SSM Parameter Store: {type(e).__name__}: {e}") from e
        with self._lock:
            self._cache[(kind, name)] = (now, value)
        return value

    def get(self, name: str) -> str:
        """The decrypted value of one parameter."""
        def fetch():
            return self.client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        return self._cached("one", name, fetch)

    def get_path(self, path: str, max_age: Optional[float] = None) -> Dict[str, str]:
        """Every parameter directly under ``path``: {name without the path: decrypted value},
        at most ``max_age`` (default: the store's) seconds old."""
        prefix = path.rstrip("/") + "/"

        def fetch():
            values, token = {}, None
            while True:
                page = self.client.get_parameters_by_path(
                    Path=prefix.rstrip("/"), Recursive=False, WithDecryption=True,
                    **({"NextToken": token} if token else {}))
                for parameter in page.get("Parameters", []):
                    values[parameter["Name"][len(prefix):]] = parameter["Value"]
                token = page.get("NextToken")
                if not token:
                    return values
        return self._cached("path", prefix, fetch, max_age)


def parse_key_entry(name: str, raw: str) -> Optional[Tuple[str, str]]:
    """(digest, role) from one registry value, or None (logged) when it is malformed."""
    try:
        entry = json.loads(raw)
        digest, role = str(entry["sha256"]).lower(), entry["role"]
    except (ValueError, KeyError, TypeError):
        log.error("api keys: registry entry %r is not {\"role\", \"sha256\"} JSON; ignored", name)
        return None
    if role not in API_ROLES or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        log.error("api keys: registry entry %r has an unknown role or a malformed digest; ignored", name)
        return None
    return digest, role


def key_entry(role: str, digest: str, api_key_id: Optional[str] = None) -> str:
    """The registry value for a key (what scripts/keys.py writes)."""
    return json.dumps({"role": role, "sha256": digest, "api_key_id": api_key_id}, sort_keys=True)


class StaticKeys:
    """Keys from the environment (``API_KEYS``): the local runs."""

    source = "API_KEYS"

    def __init__(self, keys: Mapping[str, str]):
        self._keys = dict(keys)

    def current(self) -> Dict[str, str]:
        return self._keys


class ParameterKeys:
    """Keys from the SSM registry under ``path``, re-read every ``store.max_age`` seconds.

    An unknown key may be one added or rotated since the last read: ``reread`` reads the
    registry again if that read is older than ``MISS_REFRESH_SECONDS``, so a new key works
    within half a minute, while a stream of wrong keys costs at most two reads a minute."""

    MISS_REFRESH_SECONDS = 30

    def __init__(self, store: ParameterStore, path: str):
        self.store = store
        self.path = path.rstrip("/")
        self.source = f"SSM {self.path}/*"

    def reread(self) -> Dict[str, str]:
        return self.current(max_age=min(self.MISS_REFRESH_SECONDS, self.store.max_age))

    def current(self, max_age: Optional[float] = None) -> Dict[str, str]:
        keys = {}
        for name, raw in sorted(self.store.get_path(self.path, max_age).items()):
            parsed = parse_key_entry(name, raw)
            if parsed:
                keys[parsed[0]] = parsed[1]
        return keys


def resolve(settings, store: Callable[[], ParameterStore], *fields: str):
    """``settings`` with the named secret ``fields`` (e.g. ``"webhook_secret"``) filled in from
    Parameter Store where their ``*_parameter`` setting names a parameter; ``store`` is called
    only then. Each function resolves only the secrets it uses, where it is assembled."""
    import dataclasses

    values = {field: store().get(getattr(settings, f"{field}_parameter"))
              for field in fields if getattr(settings, f"{field}_parameter")}
    return dataclasses.replace(settings, **values) if values else settings
