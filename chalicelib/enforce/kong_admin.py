"""The Kong Admin API adapter (Kong Gateway 3.x, DB mode): block a service with the bundled
``request-termination`` plugin, find our plugins again by tag, lift a block.

Service names come from Prometheus labels, i.e. from whoever configures Kong, so a name is never
put into a path that addresses anything but the service it names:
- a name is first **resolved** with ``GET /services/{name}`` (Kong takes a name or an id there,
  and a UUID-shaped key is always read as an id) and the answer is used only if its ``name`` is
  exactly the name asked for (else: Kong has no such service) and its ``id`` is a UUID;
- every later path addresses the service by that id only (``/services/{id}/plugins``);
- names that a client, a proxy or Kong's router would normalize into another path (empty, ``.``,
  ``..``, anything with ``/``, ``\\``, ``%``, ``?``, ``#``, whitespace or control characters: any
  ASCII character Kong does not allow in a name) are refused before any request: "not a Kong
  service name".
Without this, ``POST /services/../plugins`` is ``POST /plugins``: a global plugin that blocks
the whole gateway.

Requests, as Kong's Admin API has them:
- ``GET  /services/{name or id}``               the service (404 ``{"message": "Not found"}``)
- ``GET  /services/{id}/plugins``               the service's plugins
- ``POST /services/{id}/plugins``               ``{"name": "request-termination", "config": {"status_code":
  429, "message": ...}, "tags": ["bandwidth-meter"]}`` -> 201; 409 when the service already has one
- ``GET  /plugins?tags=bandwidth-meter``        tagged ours, paged (``offset`` / ``next``)
- ``DELETE /plugins/{id}``                      204 (also when it is already gone)
Consumers alike: ``GET /consumers/{username}`` (the answer used only if its ``username`` is
exactly the name), then ``GET`` / ``POST /consumers/{id}/plugins`` (a plugin scoped to the
consumer only: it blocks the consumer on every service). ``list_our_plugins`` returns our
consumer-scoped request-termination plugins as consumer blocks; the reconcile, which knows which
consumers have a block due, decides whether one is a block or drift.

A key from another workspace (``ws:name``, core/names.py) is looked up and written under that
workspace's prefix (``/ws/services/name``, ``/ws/consumers/name``), and the listing reads each
workspace asked for (``/ws/plugins?tags=...``). With ``KONG_WORKSPACE`` every other path is
prefixed with ``/{workspace}``; ``KONG_ADMIN_TOKEN`` is
sent as ``Kong-Admin-Token`` (Kong Enterprise RBAC) and redirects are never followed, so the
token never goes to another host.

Retries (5xx, timeouts, refused connections) never create a second plugin: ``block`` looks for
its own plugin before creating one, and a 409 after a create whose answer was lost means it
is there.
"""
from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional
from urllib.parse import quote, urlsplit

import requests

from chalicelib.core.errors import GatewayError, GatewayServiceNotFound
from chalicelib.core.models import CONSUMER, SERVICE
from chalicelib.core.names import DEFAULT_WORKSPACE, SEPARATOR, qualified, workspace_and_name
from chalicelib.enforce.kong_plugin import PLUGIN, TAG, plugin_body

RETRIES = 3  # attempts per request; a reconcile runs again a minute later anyway
PAGE_SIZE = 1000  # Kong's maximum
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# What Kong accepts in a service name (typedefs.utf8_name): ASCII letters, digits, ``.-_~``, and
# non-ASCII characters. Anything else (``/``, ``\``, ``%``, ``?``, ``#``, spaces, controls...) is a
# character a URL parser, a proxy or Kong's router may decode, cut at or fold into another path.
_KONG_NAME = re.compile(r"^(?:[A-Za-z0-9._~-]|[^\x00-\x7f])+$")
# A consumer's username may be anything in Kong; those holding ``@`` or ``+`` (an email, say) are
# sent too: percent-encoded in a path, no parser, proxy or router reads either as a delimiter.
_KONG_USERNAME = re.compile(r"^(?:[A-Za-z0-9._~@+-]|[^\x00-\x7f])+$")


@dataclass(frozen=True)
class BlockPlugin:
    """One of our request-termination plugins on a Kong service (or scoped to a consumer: ``kind``)."""

    id: str
    service: str  # the Kong service's key, or the consumer's ("" if Kong no longer knows it)
    service_id: str  # the service's id, or the consumer's
    message: Optional[str] = None
    kind: str = SERVICE
    workspace: Optional[str] = None  # the workspace it was listed in (None: the configured one)

    @property
    def key(self) -> tuple:
        return self.kind, self.service


@dataclass(frozen=True)
class Drift:
    """A plugin tagged ours that is not exactly one of ours: removed, never kept or counted."""

    id: str
    name: str
    why: str  # e.g. "global (no service)", "scoped to a route"
    workspace: Optional[str] = None

    def as_dict(self) -> dict:
        return {"plugin_id": self.id, "name": self.name, "why": self.why}


@dataclass
class OurPlugins:
    blocks: List[BlockPlugin] = field(default_factory=list)
    drift: List[Drift] = field(default_factory=list)


class NotAServiceName(GatewayServiceNotFound):
    """A name that cannot be a Kong service name: refused before any request is sent."""


def check_service_name(name: str, pattern: re.Pattern = _KONG_NAME, what: str = "service name") -> str:
    """The name, if it may be sent as one path segment; NotAServiceName otherwise."""
    if (not isinstance(name, str) or name in (".", "..") or not pattern.match(name)
            or any(unicodedata.category(c)[0] in "CZ" for c in name)):  # invisible or spacing: refused too
        raise NotAServiceName(f"{name!r} is not a Kong {what} (refused, never sent to Kong)")
    return name


def check_username(name: str) -> str:
    """As check_service_name, for a consumer's username (``@`` and ``+`` allowed too)."""
    return check_service_name(name, _KONG_USERNAME, "consumer username")


def is_kong_name(name) -> bool:
    """Whether ``name`` may be sent as one path segment (check_service_name without raising)."""
    try:
        check_service_name(name)
    except NotAServiceName:
        return False
    return True


def is_uuid(value) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


class KongAdmin:
    def __init__(self, base_url: str, token: Optional[str] = None, workspace: Optional[str] = None,
                 session: Optional[requests.Session] = None, timeout: float = 5,
                 sleep: Callable[[float], None] = time.sleep, retries: int = RETRIES):
        self.root_url = base_url.rstrip("/")
        self.base_url = self.root_url + (f"/{quote(workspace, safe='')}" if workspace else "")
        self.session = session or requests.Session()
        self.headers = {"Accept": "application/json", **({"Kong-Admin-Token": token} if token else {})}
        self.timeout = timeout
        self.sleep = sleep
        self.retries = max(1, retries)
        self.requests_made = 0

    # -- the operations ------------------------------------------------------------------------
    def service_id(self, service: str) -> str:
        """The id of the Kong service named exactly ``service`` (a key: ``ws:name`` is looked up in
        workspace ws); GatewayServiceNotFound when Kong has none (or answers with another entity:
        ``service`` was some other entity's id)."""
        return self._entity_id(SERVICE, service)

    def consumer_id(self, consumer: str) -> str:
        """The id of the Kong consumer whose username is exactly ``consumer`` (a key, as for services)."""
        return self._entity_id(CONSUMER, consumer)

    def list_our_plugins(self, workspaces: Iterable[str] = ()) -> OurPlugins:
        """Every plugin tagged ours, in the configured workspace and in each of ``workspaces``: our
        service blocks (with their service's key), our consumer-scoped request-termination plugins
        (with their consumer's key; the reconcile decides which are blocks), and drift: anything
        else tagged ours (not a request-termination plugin on exactly one service or consumer)."""
        found = OurPlugins()
        # A workspace no Kong could have (from a hostile label) is never listed: its blocks are
        # reported missing when they are applied, and the other workspaces are reconciled.
        for workspace in [None] + sorted(w for w in set(workspaces) - {None} if is_kong_name(w)):
            self._list_in(workspace, found)
        return found

    def block(self, service: str, message: str) -> str:
        """Make sure the service has our request-termination plugin; return its id."""
        return self._block(SERVICE, service, message)

    def block_consumer(self, consumer: str, message: str) -> str:
        """Make sure the consumer has our request-termination plugin (on every service); return its id."""
        return self._block(CONSUMER, consumer, message)

    def unblock(self, plugin_id: str, workspace: Optional[str] = None) -> None:
        """Delete one of our plugins (or a drifted one) by its id; gone already is fine."""
        if not is_uuid(plugin_id):
            raise GatewayError(f"plugin id {plugin_id!r} is not a UUID; nothing was sent")
        self._request("DELETE", f"/plugins/{plugin_id}", f"removing plugin {plugin_id}", accept=(204, 404),
                      workspace=workspace)

    # -- helpers -----------------------------------------------------------------------------
    def _entity_id(self, kind: str, key: str) -> str:
        workspace, name = _located(key, kind)
        collection, field_name = _COLLECTIONS[kind]
        # 400: Kong refused the key itself (not a name it could hold): no such entity either.
        answer = self._request("GET", f"/{collection}/{quote(name, safe='')}", f"looking up {kind} {key!r}",
                               accept=(200, 400, 404), workspace=workspace)
        entity = _json(answer) if answer.status_code == 200 else {}
        if answer.status_code != 200 or entity.get(field_name) != name:
            raise GatewayServiceNotFound(f"Kong has no {kind} named {key!r}")
        if not is_uuid(entity.get("id")):
            raise GatewayError(f"Kong answered {kind} {key!r} with an id that is not a UUID; nothing was sent")
        return entity["id"]

    def _block(self, kind: str, key: str, message: str) -> str:
        workspace, _ = _located(key, kind)
        collection, _ = _COLLECTIONS[kind]
        entity_id = self._entity_id(kind, key)
        existing = self._own_plugin(kind, key, entity_id, workspace)
        if existing:
            return existing
        answer = self._request("POST", f"/{collection}/{entity_id}/plugins", f"blocking {kind} {key!r}",
                               json=plugin_body(message), accept=(201, 404, 409), workspace=workspace)
        if answer.status_code == 404:
            raise GatewayServiceNotFound(f"Kong {kind} {key!r} went away while it was being blocked")
        if answer.status_code == 201:
            return _json(answer)["id"]
        # 409: the entity already has a request-termination plugin: ours (an earlier attempt whose
        # answer was lost) or one an operator added, which we leave alone and report.
        existing = self._own_plugin(kind, key, entity_id, workspace)
        if existing:
            return existing
        raise GatewayError(f"Kong {kind} {key!r} already has a request-termination plugin that is not "
                           f"tagged {TAG}; it was left as it is")

    def _list_in(self, workspace: Optional[str], found: OurPlugins) -> None:
        names: Dict[tuple, str] = {}
        path: Optional[str] = f"/plugins?tags={TAG}&size={PAGE_SIZE}"
        where = f" in workspace {workspace}" if workspace else ""
        while path:
            page = _json(self._request("GET", path, "listing our plugins" + where, workspace=workspace))
            for plugin in page.get("data") or []:
                if TAG not in (plugin.get("tags") or []):
                    continue  # Kong filtered by tag; never trust a page further than that
                kind = CONSUMER if _is_consumer_block(plugin) else SERVICE
                drift = None if kind == CONSUMER else _drift(plugin)
                if drift is not None:
                    found.drift.append(Drift(drift.id, drift.name, drift.why, workspace))
                    continue
                entity_id = plugin[kind]["id"]
                if (kind, entity_id) not in names:
                    names[(kind, entity_id)] = self._entity_name(kind, entity_id, workspace)
                name = names[(kind, entity_id)]
                found.blocks.append(BlockPlugin(plugin["id"], qualified(workspace, name) if workspace and name
                                                else name, entity_id, (plugin.get("config") or {}).get("message"),
                                                kind, workspace))
            offset = page.get("offset")
            path = f"/plugins?tags={TAG}&size={PAGE_SIZE}&offset={quote(str(offset), safe='')}" if offset else None

    def _own_plugin(self, kind: str, key: str, entity_id: str, workspace: Optional[str]) -> Optional[str]:
        collection, _ = _COLLECTIONS[kind]
        answer = self._request("GET", f"/{collection}/{entity_id}/plugins?size={PAGE_SIZE}",
                               f"reading the plugins of {kind} {key!r}", accept=(200, 404), workspace=workspace)
        if answer.status_code == 404:
            raise GatewayServiceNotFound(f"Kong {kind} {key!r} went away while it was being blocked")
        mine = _is_consumer_block if kind == CONSUMER else (lambda p: _drift(p) is None)
        for plugin in _json(answer).get("data") or []:
            if plugin.get("name") == PLUGIN and TAG in (plugin.get("tags") or []) and mine(plugin):
                return plugin["id"]
        return None

    def _entity_name(self, kind: str, entity_id: str, workspace: Optional[str]) -> str:
        collection, field_name = _COLLECTIONS[kind]
        answer = self._request("GET", f"/{collection}/{entity_id}", f"reading a {kind}", accept=(200, 404),
                               workspace=workspace)
        entity = _json(answer) if answer.status_code == 200 else {}
        if entity.get("id") != entity_id:
            return ""  # the entity is gone (its plugins go with it in Kong)
        return entity.get(field_name) or ""

    def _service_name(self, service_id: str) -> str:
        return self._entity_name(SERVICE, service_id, None)

    def _request(self, method: str, path: str, what: str, json: Optional[dict] = None,
                 accept=(200,), workspace: Optional[str] = None) -> requests.Response:
        if workspace is not None:
            check_service_name(workspace)  # one path segment, never rewritten into another path
        url = (self.base_url if workspace is None else f"{self.root_url}/{quote(workspace, safe='')}") + path
        last: Optional[str] = None
        for attempt in range(self.retries):
            if attempt:
                self.sleep(min(0.5 * 2 ** (attempt - 1), 2.0))
            self.requests_made += 1
            try:
                # Never follow a redirect: requests would carry the Kong-Admin-Token to its host.
                answer = self.session.request(method, url, json=json, headers=self.headers, timeout=self.timeout,
                                              allow_redirects=False)
            except requests.RequestException as e:
                last = f"{type(e).__name__}"
                continue
            if answer.status_code in accept:
                return answer
            if 300 <= answer.status_code < 400:
                host = urlsplit(answer.headers.get("Location") or "").hostname or "an unnamed place"
                raise GatewayError(f"Kong Admin API answered {what} with a redirect (HTTP {answer.status_code}) to "
                                   f"{host}; redirects are not followed (the token would go along)")
            if answer.status_code >= 500 or answer.status_code == 429:
                last = f"HTTP {answer.status_code}"
                continue
            raise GatewayError(f"Kong Admin API refused {what}: HTTP {answer.status_code} {_message(answer)}")
        raise GatewayError(f"Kong Admin API failed {what} after {self.retries} attempts: {last}")


_COLLECTIONS = {SERVICE: ("services", "name"), CONSUMER: ("consumers", "username")}


def _located(key: str, kind: str = SERVICE) -> tuple:
    """(workspace or None, name) of a key, both checked to be sendable as one path segment: a
    default-workspace key stays in the configured workspace (None)."""
    check_name = check_username if kind == CONSUMER else check_service_name
    if SEPARATOR not in key:
        return None, check_name(key)
    workspace, name = workspace_and_name(key)
    check_service_name(workspace)
    check_name(name)
    return (None if workspace == DEFAULT_WORKSPACE else workspace), name


def _is_consumer_block(plugin: dict) -> bool:
    """A request-termination plugin scoped to exactly one consumer (no service, route or group)."""
    return (plugin.get("name") == PLUGIN and is_uuid(plugin.get("id"))
            and is_uuid((plugin.get("consumer") or {}).get("id"))
            and not plugin.get("service") and not plugin.get("route") and not plugin.get("consumer_group"))


def _drift(plugin: dict) -> Optional[Drift]:
    """Why a plugin tagged ours is not one of ours (None when it is)."""
    plugin_id, name = str(plugin.get("id")), str(plugin.get("name"))
    service_id = (plugin.get("service") or {}).get("id")
    if not is_uuid(plugin.get("id")):
        why = "an id that is not a UUID"
    elif name != PLUGIN:
        why = f"a {name} plugin"
    elif plugin.get("route"):
        why = "scoped to a route"
    elif plugin.get("consumer") or plugin.get("consumer_group"):
        why = "scoped to a consumer"
    elif not service_id:
        why = "global (no service): it blocks the whole gateway"
    elif not is_uuid(service_id):
        why = "on a service whose id is not a UUID"
    else:
        return None
    return Drift(plugin_id, name, why)


def _json(answer: requests.Response) -> Dict:
    try:
        body = answer.json()
    except ValueError as e:
        raise GatewayError(f"Kong Admin API answered HTTP {answer.status_code} without JSON") from e
    if not isinstance(body, dict):
        raise GatewayError(f"Kong Admin API answered HTTP {answer.status_code} with JSON that is not an object")
    return body


def _message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("message", ""))[:200]
    except (ValueError, AttributeError):
        return answer.text[:200]
