"""The subset of Kong's Admin API (3.x, DB mode) that enforcement uses, for the development gateway.

Served on its own port like Kong's (8001), with Kong's shapes: services by name or id, a
service's plugins (list, create with tags; 409 when the service already has a plugin of that
name), ``GET /plugins?tags=`` paged with ``size`` / ``offset``, ``DELETE /plugins/{id}`` (204
even when it is gone), an optional ``/{workspace}`` prefix and an optional ``Kong-Admin-Token``.
The gateway honours an enabled request-termination plugin on a service (``termination``).

Tests inject faults: ``fail_next(n, status=500)`` answers the next n requests with that status,
``fail_next(n, delay=2)`` answers them late (a client timeout), and ``lose_next_create()``
carries the next create out and then answers 500, as when Kong's answer is lost on the way.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from localrun.devgateway import _Server
from http.server import BaseHTTPRequestHandler

NOT_FOUND = {"message": "Not found"}


class AdminState:
    """Kong's entities as the Admin API sees them (thread-safe)."""

    def __init__(self, services: Iterable[str], workspace: Optional[str] = None, token: Optional[str] = None):
        self._lock = threading.Lock()
        self.services: Dict[str, dict] = {}
        for name in services:
            sid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kong-service:{name}"))
            self.services[sid] = {"id": sid, "name": name, "protocol": "http", "host": "upstream", "port": 80,
                                  "tags": None, "enabled": True}
        self.plugins: Dict[str, dict] = {}  # in creation order
        self.workspace = workspace
        self.token = token
        self.requests: List[Tuple[str, str]] = []  # (method, path) received, for tests
        self._faults: List[Tuple[Optional[int], float]] = []
        self._lose_creates = 0

    # -- faults -----------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: Optional[int] = 500, delay: float = 0.0) -> None:
        with self._lock:
            self._faults += [(status if not delay else None, delay)] * n

    def lose_next_create(self) -> None:
        with self._lock:
            self._lose_creates += 1

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
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
        with self._lock:
            if name_or_id in self.services:
                return self.services[name_or_id]
            return next((s for s in self.services.values() if s["name"] == name_or_id), None)

    def plugins_of(self, service_id: str) -> List[dict]:
        with self._lock:
            return [p for p in self.plugins.values() if (p.get("service") or {}).get("id") == service_id]

    def create_plugin(self, service: dict, body: dict) -> Tuple[int, dict]:
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
        with self._lock:
            for plugin in self.plugins.values():
                if plugin["name"] == name and (plugin.get("service") or {}).get("id") == service["id"]:
                    return 409, {"code": 5, "name": "unique constraint violation",
                                 "message": f"UNIQUE violation detected on '{{consumer=null,name=\"{name}\","
                                            f"route=null,service={{id=\"{service['id']}\"}}}}'",
                                 "fields": {"consumer": None, "name": name, "route": None,
                                            "service": {"id": service["id"]}}}
            plugin = {"id": str(uuid.uuid4()), "name": name, "config": config, "tags": tags,
                      "service": {"id": service["id"]}, "route": None, "consumer": None, "enabled": True,
                      "protocols": ["grpc", "grpcs", "http", "https"], "created_at": int(time.time()),
                      "instance_name": None}
            self.plugins[plugin["id"]] = plugin
        return 201, plugin

    def delete_plugin(self, plugin_id: str) -> None:
        with self._lock:
            self.plugins.pop(plugin_id, None)

    def tagged(self, tags: List[str], any_of: bool) -> List[dict]:
        with self._lock:
            plugins = list(self.plugins.values())
        match = (lambda p: any(t in (p["tags"] or []) for t in tags)) if any_of \
            else (lambda p: all(t in (p["tags"] or []) for t in tags))
        return [p for p in plugins if match(p)]

    def termination(self, service_name: str) -> Optional[dict]:
        """The enabled request-termination config on this service, if any (what the proxy honours)."""
        service = self.service(service_name)
        if service is None:
            return None
        for plugin in self.plugins_of(service["id"]):
            if plugin["name"] == "request-termination" and plugin["enabled"]:
                return plugin["config"]
        return None


class _AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: Optional[dict]) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
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
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        state.requests.append((self.command, parts.path))
        if state.token is not None and self.headers.get("Kong-Admin-Token") != state.token:
            return self._send(401, {"message": "Invalid credentials. Token or User credentials required"})
        if state.workspace and segments[:1] == [state.workspace]:
            segments = segments[1:]
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
                return 200, {"data": state.plugins_of(service["id"]), "next": None}
            if segments[2:] == ["plugins"] and method == "POST":
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return 400, {"message": "Cannot parse JSON body"}
                return state.create_plugin(service, body if isinstance(body, dict) else {})
        if segments == ["plugins"] and method == "GET":
            return 200, self._page(state, query)
        if segments[:1] == ["plugins"] and len(segments) == 2 and method == "DELETE":
            state.delete_plugin(segments[1])
            return 204, None
        return 404, NOT_FOUND

    @staticmethod
    def _page(state: AdminState, query) -> dict:
        tags = query.get("tags", [None])[0]
        plugins = list(state.plugins.values())
        if tags:
            any_of = "/" in tags
            plugins = state.tagged(tags.replace("/", ",").split(","), any_of)
        size = min(int(query.get("size", ["100"])[0]), 1000)
        start = int(query.get("offset", ["0"])[0])
        page = plugins[start:start + size]
        more = start + size < len(plugins)
        return {"data": page, "offset": str(start + size) if more else None,
                "next": f"/plugins?offset={start + size}" if more else None}

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

    def log_message(self, *args):
        pass


class AdminServer(_Server):
    """The Admin API on its own port (``url``), over ``state``."""

    handler_class = _AdminHandler

    def __init__(self, state: AdminState):
        self.state = state
