"""The subset of Kong's Admin API (3.x, DB mode) that enforcement uses, for the development gateway.

Served on its own port like Kong's (8001), with Kong's shapes:
- ``GET /services/{name or id}``: a UUID-shaped key is read as an id only (as Kong's endpoints
  do), anything else as a name; 404 ``{"message": "Not found"}``;
- the request path is percent-decoded and its dot segments resolved before routing, as nginx
  does in front of Kong: ``/services/../plugins`` *is* ``/plugins``;
- plugins scoped to a service, a route, a consumer, or global (none of them): ``POST /plugins``
  (global unless the body names a scope) and ``POST /services/{name or id}/plugins``; 409 when
  the same scope already has a plugin of that name;
- ``GET /plugins`` and ``GET /services/{..}/plugins``, ``tags=`` (``a,b`` all of, ``a/b`` any
  of), paged with ``size`` / ``offset``; ``DELETE /plugins/{id}`` (204 even when it is gone);
- consumers: ``GET /consumers`` (paged like plugins, ``tags=``), ``GET /consumers/{username or
  id}`` (a UUID-shaped key is an id only), ``GET`` / ``POST /consumers/{username or id}/plugins``
  (a plugin scoped to that consumer, and to one service too when the body names ``service:
  {id}``); ``POST /plugins`` with ``consumer: {id}`` needs an existing consumer (400 otherwise);
- an optional ``/{workspace}`` prefix (``workspace_only``: required, the default workspace being
  empty, as when every entity lives in another workspace) and an optional ``Kong-Admin-Token``.
The gateway honours enabled request-termination plugins as Kong does (``termination``): Kong's
most specific configuration wins (route+service+consumer, route+consumer, service+consumer,
route+service, consumer, route, service, global), so one scoped to a consumer blocks that
consumer on every service, one scoped to a consumer and a service only there, and a global
one every request.

Tests inject faults: ``fail_next(n, status=500)`` answers the next n requests with that status,
``fail_next(n, delay=2)`` answers them late (a client timeout), ``redirect_next(url)`` answers the
next request with a 307 to ``url``, and ``lose_next_create()`` carries the next create out and
then answers 500, as when Kong's answer is lost on the way.
"""
from __future__ import annotations

import json
import posixpath
import re
import threading
import time
import uuid
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from http.server import BaseHTTPRequestHandler

from localrun.devgateway import _Server, consumer_id

NOT_FOUND = {"message": "Not found"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SCOPES = ("service", "route", "consumer")


def routing_path(raw_path: str) -> str:
    """The path Kong routes: percent-decoded, dot segments resolved, slashes merged (nginx)."""
    decoded = unquote(raw_path)
    resolved = posixpath.normpath("/" + decoded.lstrip("/")) if decoded else "/"
    return "/" if resolved in (".", "//") else resolved.replace("//", "/")


class AdminState:
    """Kong's entities as the Admin API sees them (thread-safe)."""

    def __init__(self, services: Iterable[str], workspace: Optional[str] = None, token: Optional[str] = None,
                 workspace_only: bool = False):
        self._lock = threading.Lock()
        # With ``workspace_only`` every entity lives in ``workspace`` alone, as in Kong: a path
        # without its prefix addresses the (empty) default workspace.
        self.workspace_only = workspace_only
        self.services: Dict[str, dict] = {}
        for name in services:
            self.add_service(name)
        self.consumers: Dict[str, dict] = {}  # by id, in creation order
        self.plugins: Dict[str, dict] = {}  # in creation order
        self.workspace = workspace
        self.token = token
        self.requests: List[Tuple[str, str]] = []  # (method, path as sent) received, for tests
        self.headers: List[dict] = []  # each request's headers, for tests
        self._faults: List[Tuple[Optional[int], float]] = []
        self._redirects: List[str] = []
        self._lose_creates = 0

    def add_service(self, name: str) -> dict:
        """A service named ``name`` (any name Kong accepts, ``..`` included), with a stable id."""
        sid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kong-service:{name}"))
        service = {"id": sid, "name": name, "protocol": "http", "host": "upstream", "port": 80, "tags": None,
                   "enabled": True}
        with self._lock:
            self.services[sid] = service
        return service

    def add_consumer(self, username: str, custom_id: Optional[str] = None, tags: Optional[List[str]] = None) -> dict:
        """A consumer named ``username``, with the id the development gateway gives it too."""
        now = int(time.time())
        consumer = {"id": consumer_id(username), "username": username, "custom_id": custom_id, "tags": tags,
                    "created_at": now, "updated_at": now}
        with self._lock:
            consumer = self.consumers.setdefault(consumer["id"], consumer)
        return consumer

    # -- faults -----------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: Optional[int] = 500, delay: float = 0.0) -> None:
        with self._lock:
            self._faults += [(status if not delay else None, delay)] * n

    def redirect_next(self, location: str) -> None:
        with self._lock:
            self._redirects.append(location)

    def _take_redirect(self) -> Optional[str]:
        with self._lock:
            return self._redirects.pop(0) if self._redirects else None

    def lose_next_create(self) -> None:
        with self._lock:
            self._lose_creates += 1

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._redirects.clear()
            self._lose_creates = 0

    def _take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _take_lost_create(self) -> bool:
        with self._lock:
            if self._lose_creates:
                self._lose_creates -= 1
                return True
            return False

    # -- entities ---------------------------------------------------------------------------
    def service(self, name_or_id: str) -> Optional[dict]:
        """As Kong's endpoints: a UUID-shaped key is an id (never a name), anything else a name."""
        with self._lock:
            if _UUID.match(name_or_id):
                return self.services.get(name_or_id.lower())
            return next((s for s in self.services.values() if s["name"] == name_or_id), None)

    def consumer(self, username_or_id: str) -> Optional[dict]:
        """As Kong's endpoints: a UUID-shaped key is an id (never a username), anything else a username."""
        with self._lock:
            if _UUID.match(username_or_id):
                return self.consumers.get(username_or_id.lower())
            return next((c for c in self.consumers.values() if c["username"] == username_or_id), None)

    def plugins_of_consumer(self, consumer_id: str) -> List[dict]:
        with self._lock:
            return [p for p in self.plugins.values() if (p.get("consumer") or {}).get("id") == consumer_id]

    def plugins_of(self, service_id: str) -> List[dict]:
        with self._lock:
            return [p for p in self.plugins.values() if (p.get("service") or {}).get("id") == service_id]

    def global_plugins(self) -> List[dict]:
        with self._lock:
            return [p for p in self.plugins.values() if not any(p.get(scope) for scope in SCOPES)]

    def create_plugin(self, service: Optional[dict], body: dict, route: Optional[str] = None,
                      consumer: Optional[str] = None) -> Tuple[int, dict]:
        """A plugin on ``service`` (an entity), or scoped by ``route`` / ``consumer`` ids, or global."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return 400, {"code": 2, "name": "schema violation", "message": "schema violation (name: required field missing)",
                         "fields": {"name": "required field missing"}}
        tags = body.get("tags")
        if tags is not None and (not isinstance(tags, list) or any(not isinstance(t, str) or not t
                                                                  or "," in t or "/" in t for t in tags)):
            return 400, {"code": 2, "name": "schema violation", "message": "schema violation (tags: invalid tag)"}
        config = dict(body.get("config") or {})
        if name == "request-termination":
            status = config.setdefault("status_code", 503)
            if not isinstance(status, int) or not 100 <= status <= 599:
                return 400, {"code": 2, "name": "schema violation",
                             "message": "schema violation (config.status_code: value should be between 100 and 599)"}
            if config.get("message") is not None and config.get("body") is not None:
                return 400, {"code": 2, "name": "schema violation",
                             "message": "schema violation (message and body are mutually exclusive)"}
        scope = {"service": {"id": service["id"]} if service else None, "route": {"id": route} if route else None,
                 "consumer": {"id": consumer} if consumer else None}
        with self._lock:
            for plugin in self.plugins.values():
                if plugin["name"] == name and all(plugin.get(k) == v for k, v in scope.items()):
                    return 409, {"code": 5, "name": "unique constraint violation",
                                 "message": f"UNIQUE violation detected on '{{consumer={scope['consumer']},"
                                            f"name=\"{name}\",route={scope['route']},service={scope['service']}}}'",
                                 "fields": {"name": name, **scope}}
            plugin = {"id": str(uuid.uuid4()), "name": name, "config": config, "tags": tags,
                      **scope, "enabled": True,
                      "protocols": ["grpc", "grpcs", "http", "https"], "created_at": int(time.time()),
                      "instance_name": None}
            self.plugins[plugin["id"]] = plugin
        return 201, plugin

    def delete_plugin(self, plugin_id: str) -> None:
        with self._lock:
            self.plugins.pop(plugin_id, None)

    def termination(self, service_name: str, route_name: Optional[str] = None,
                    consumer_id: Optional[str] = None) -> Optional[dict]:
        """The enabled request-termination config the proxy honours for a request to this service
        (and route) by this authenticated consumer, if any: the most specific, in Kong's order
        (route+service+consumer, route+consumer, service+consumer, route+service, consumer,
        route, service, global)."""
        with self._lock:
            service = next((s for s in self.services.values() if s["name"] == service_name), None)
            combos = {}
            for p in self.plugins.values():
                if p["name"] == "request-termination" and p["enabled"]:
                    combo = tuple((p.get(scope) or {}).get("id") for scope in ("route", "service", "consumer"))
                    combos.setdefault(combo, p["config"])
        route_id, service_id = route_name, service["id"] if service else None
        order = [(route_id, service_id, consumer_id), (route_id, None, consumer_id), (None, service_id, consumer_id),
                 (route_id, service_id, None), (None, None, consumer_id), (route_id, None, None),
                 (None, service_id, None), (None, None, None)]
        for route, service_key, consumer in order:  # a scope the request lacks (None) is never required
            if (route, service_key, consumer) in combos:
                return combos[(route, service_key, consumer)]
        return None


class _AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: Optional[dict], headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        state: AdminState = self.server_owner.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        segments = [s for s in routing_path(parts.path).split("/") if s]
        query = parse_qs(parts.query)
        state.requests.append((self.command, parts.path))
        state.headers.append(dict(self.headers.items()))
        if state.token is not None and self.headers.get("Kong-Admin-Token") != state.token:
            return self._send(401, {"message": "Invalid credentials. Token or User credentials required"})
        if state.workspace and segments[:1] == [state.workspace]:
            segments = segments[1:]
        elif state.workspace_only:
            if self.command == "GET" and segments in (["plugins"], ["consumers"], ["services"]):
                return self._send(200, {"data": [], "next": None})
            return self._send(404, NOT_FOUND)
        location = state._take_redirect()
        if location is not None:
            return self._send(307, {"message": "moved"}, {"Location": location})
        fault = state._take_fault()
        if fault is not None:
            status, delay = fault
            if delay:
                time.sleep(delay)
            return self._send(status or 500, {"message": "An unexpected error occurred"})
        status, body = self._route(state, segments, query, raw)
        if self.command == "POST" and status == 201 and state._take_lost_create():
            return self._send(500, {"message": "An unexpected error occurred"})  # made, answer lost
        return self._send(status, body)

    def _route(self, state: AdminState, segments: List[str], query, raw: bytes):
        method = self.command
        if segments[:1] == ["services"] and len(segments) in (2, 3):
            service = state.service(segments[1])
            if service is None:
                return 404, NOT_FOUND
            if len(segments) == 2 and method == "GET":
                return 200, service
            if segments[2:] == ["plugins"] and method == "GET":
                return self._page(state.plugins_of(service["id"]), query, segments)
            if segments[2:] == ["plugins"] and method == "POST":
                body = _body(raw)
                if body is None:
                    return 400, {"message": "Cannot parse JSON body"}
                return state.create_plugin(service, body)
        if segments == ["consumers"] and method == "GET":
            with state._lock:
                consumers = list(state.consumers.values())
            return self._page(consumers, query, segments)
        if segments[:1] == ["consumers"] and len(segments) in (2, 3):
            consumer = state.consumer(segments[1])
            if consumer is None:
                return 404, NOT_FOUND
            if len(segments) == 2 and method == "GET":
                return 200, consumer
            if segments[2:] == ["plugins"] and method == "GET":
                return self._page(state.plugins_of_consumer(consumer["id"]), query, segments)
            if segments[2:] == ["plugins"] and method == "POST":
                # Scoped to this consumer; the body may narrow it to one service (or route) too.
                body = _body(raw)
                if body is None:
                    return 400, {"message": "Cannot parse JSON body"}
                service, failure = _foreign_service(state, body)
                if failure:
                    return failure
                return state.create_plugin(service, body, route=_reference(body, "route"),
                                           consumer=consumer["id"])
        if segments == ["plugins"] and method == "GET":
            with state._lock:
                plugins = list(state.plugins.values())
            return self._page(plugins, query, segments)
        if segments == ["plugins"] and method == "POST":
            # Global unless the body names a scope: what ``POST /services/../plugins`` becomes.
            body = _body(raw)
            if body is None:
                return 400, {"message": "Cannot parse JSON body"}
            service, failure = _foreign_service(state, body)
            if failure:
                return failure
            consumer = _reference(body, "consumer")
            if consumer is not None and state.consumer(consumer) is None:
                return 400, {"code": 4, "name": "foreign key violation",
                             "message": f"the foreign key '{{id=\"{consumer}\"}}' does not reference an existing "
                                        "'consumers' entity."}
            return state.create_plugin(service, body, route=_reference(body, "route"),
                                       consumer=consumer)
        if segments[:1] == ["plugins"] and len(segments) == 2 and method == "DELETE":
            state.delete_plugin(segments[1])
            return 204, None
        return 404, NOT_FOUND

    @staticmethod
    def _page(entities: List[dict], query, segments: List[str]) -> Tuple[int, dict]:
        """A page of plugins or consumers, as Kong pages a collection (400 for a bad size or offset)."""
        tags = query.get("tags", [None])[0]
        if tags:
            wanted = tags.replace("/", ",").split(",")
            pick = any if "/" in tags else all
            entities = [e for e in entities if pick(t in (e["tags"] or []) for t in wanted)]
        size, offset = query.get("size", ["100"])[0], query.get("offset", ["0"])[0]
        if not size.isdigit():
            return 400, {"message": "size must be a number"}
        if not 1 <= int(size) <= 1000:
            return 400, {"message": "size must be an integer between 1 and 1000"}
        if not offset.isdigit():
            return 400, {"code": 7, "name": "invalid offset", "message": f"'{offset}' is not a valid offset"}
        size, start = int(size), int(offset)
        page = entities[start:start + size]
        more = start + size < len(entities)
        path = "/" + "/".join(segments)
        return 200, {"data": page, "offset": str(start + size) if more else None,
                     "next": f"{path}?offset={start + size}" + (f"&tags={tags}" if tags else "") if more else None}

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

    def log_message(self, *args):
        pass


def _reference(body: dict, scope: str) -> Optional[str]:
    """The id in the body's ``scope: {"id": ...}`` (checked by ``_foreign_service``), or None."""
    value = body.get(scope)
    return value["id"] if isinstance(value, dict) else None


def _foreign_service(state: AdminState, body: dict):
    """(the service the body's ``service: {id}`` names, None) or (None, the 400 Kong answers).
    A scope that is not ``{"id": "..."}`` is refused, never read as no scope (a global plugin)."""
    for scope in SCOPES:
        value = body.get(scope)
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]):
            return None, (400, {"code": 2, "name": "schema violation",
                                "message": f"schema violation ({scope}: expected a record with an id)"})
    if _reference(body, "service") is None:
        return None, None
    service = state.service(_reference(body, "service"))
    if service is None:
        return None, (400, {"code": 4, "name": "foreign key violation", "message": "service not found"})
    return service, None


def _body(raw: bytes) -> Optional[dict]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else {}


class AdminServer(_Server):
    """The Admin API on its own port (``url``), over ``state``."""

    handler_class = _AdminHandler

    def __init__(self, state: AdminState):
        self.state = state
