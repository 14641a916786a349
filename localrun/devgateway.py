"""A development gateway that behaves like Kong where Kong cannot run.

It proxies requests by path prefix to upstreams, answers a default response when no
route matches and 503 when the upstream is down, keeps traffic stats (``GET /stats``),
and serves ``GET /metrics`` in Kong's Prometheus exposition format (2.x, 3.0 or 3.7
schema): bandwidth counted like Kong (request length in, bytes sent out), request
counters by status, and latency histograms with Kong's buckets.

It can speak another gateway's bandwidth series instead (``gateway:`` in the configuration,
``GATEWAY`` for ``make run``; chalicelib/collect/gateways.py reads them), each counting what
that gateway counts: ``apisix`` the same wire sizes as Kong (``apisix_bandwidth{type}``, the
upstream's address as ``node``); ``traefik`` body bytes only, for requests that reached the
service (``traefik_service_{requests,responses}_bytes_total``); ``envoy`` the bytes on the
connection to the upstream (``envoy_cluster_upstream_cx_{tx,rx}_bytes_total``), for requests the
upstream answered: here the request and the response as forwarded, sized from their lines,
headers and bodies (close to, not exactly, the socket's bytes). Their ``/metrics`` hold the bandwidth series only.

Consumers authenticate as with Kong's key-auth plugin on the services or routes that have
it: the key from the ``apikey`` header, else the ``apikey`` query argument (the key names
are configurable, as Kong's ``key_names``); 401 without a key or with an unknown one.
With ``per_consumer`` on (the prometheus plugin's option) bandwidth and request counters
carry the consumer's username, as Kong 3.x labels them; traffic without a consumer, and
all traffic with ``per_consumer`` off, carries ``consumer=""``.
"""
from __future__ import annotations

import json
import math
import os
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import requests
import yaml

SCHEMAS = ("2", "3.0", "3.7")
GATEWAYS = ("kong", "apisix", "traefik", "envoy")  # the formats /metrics can speak (GATEWAY)
# Kong's default latency buckets (ms), kong/plugins/prometheus/exporter.lua
LATENCY_BUCKETS = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 2000, 5000, 10000, 30000, 60000)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class Route:
    path_prefix: str
    upstream: str
    service: str
    route: str


def consumer_id(username: str) -> str:
    """A consumer's stable id, the same in the gateway and its Admin API (as Kong's database keeps one)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kong-consumer:{username}"))


@dataclass(frozen=True)
class Consumer:
    """A Kong consumer with its key-auth credentials. Prometheus labels it by ``username`` only."""
    username: str
    keys: Tuple[str, ...] = ()
    custom_id: Optional[str] = None

    @property
    def id(self) -> str:
        return consumer_id(self.username)


@dataclass(frozen=True)
class KeyAuth:
    """Kong's key-auth plugin on a service, a route, both, or (neither) every route."""
    service: Optional[str] = None
    route: Optional[str] = None
    key_names: Tuple[str, ...] = ("apikey",)
    key_in_header: bool = True
    key_in_query: bool = True


@dataclass(frozen=True)
class AuthFailure:
    """key-auth's refusal: 401 and Kong's message (which changed in Kong 3.6)."""
    message: str
    www_authenticate: str


@dataclass
class GatewayConfig:
    schema: str = "3.7"
    routes: List[Route] = field(default_factory=list)
    default_response: Tuple[int, str] = (404, '{"message":"no Route matched with those values"}')
    traffic: dict = field(default_factory=dict)
    consumers: List[Consumer] = field(default_factory=list)
    key_auth: List[KeyAuth] = field(default_factory=list)
    # The prometheus plugin's per_consumer (Kong's default is off; Bandwidth Meter wants it on).
    per_consumer: bool = True
    gateway: str = "kong"  # whose series /metrics renders (GATEWAYS)

    def key_auth_for(self, route: Route) -> Optional[KeyAuth]:
        """The key-auth plugin that runs for ``route``: the most specific, as Kong picks a
        plugin's configuration (route and service, route, service, global)."""
        for want_route, want_service in ((route.route, route.service), (route.route, None),
                                         (None, route.service), (None, None)):
            for plugin in self.key_auth:
                if plugin.route == want_route and plugin.service == want_service:
                    return plugin
        return None

    def consumer_by_key(self, key: str) -> Optional[Consumer]:
        return next((c for c in self.consumers if key in c.keys), None)


def authenticate(config: GatewayConfig, route: Route, headers: List[Tuple[str, str]],
                 query: str) -> Tuple[Optional[Consumer], Optional[AuthFailure]]:
    """Kong's key-auth for one request: (consumer, None) when a valid key is found, (None, None)
    when the route has no key-auth (anonymous), (None, failure) when it refuses the request.

    For each key name, in order, the header (any case) and then the query argument; a name given
    twice is refused as a duplicate key, an empty value counts as no key."""
    plugin = config.key_auth_for(route)
    if plugin is None:
        return None, None
    new = config.schema == "3.7"  # Kong 3.6+ words an unknown key "Unauthorized" and drops the realm
    challenge = "Key" if new else 'Key realm="kong"'
    arguments = parse_qs(query, keep_blank_values=True)
    key = None
    for name in plugin.key_names:
        values = [v for k, v in headers if k.lower() == name.lower()] if plugin.key_in_header else []
        if not values and plugin.key_in_query:
            values = arguments.get(name, [])
        if len(values) > 1:
            return None, AuthFailure("Duplicate API key found", challenge)
        if values:
            key = values[0]
            break
    if not key:
        return None, AuthFailure("No API key found in request", challenge)
    consumer = config.consumer_by_key(key)
    if consumer is None:
        return None, AuthFailure("Unauthorized" if new else "Invalid authentication credentials",
                                 challenge if new else "")
    return consumer, None


def _consumers(raw) -> List[Consumer]:
    consumers, usernames, keys = [], set(), set()
    for i, item in enumerate(raw or []):
        username = item.get("username") if isinstance(item, dict) else None
        if not isinstance(username, str) or not username:
            raise ValueError(f"consumers[{i}] lacks username (Prometheus labels a consumer by its username)")
        if username in usernames:
            raise ValueError(f"consumers[{i}]: username {username!r} is given twice")
        usernames.add(username)
        credentials = item.get("keyauth_credentials") or []
        found = tuple(c.get("key") if isinstance(c, dict) else None for c in credentials)
        if any(not isinstance(k, str) or not k for k in found):
            raise ValueError(f"consumers[{i}].keyauth_credentials: every credential needs a key")
        for k in found:
            if k in keys:
                raise ValueError(f"consumers[{i}]: key {k!r} already belongs to another consumer")
            keys.add(k)
        consumers.append(Consumer(username, found, item.get("custom_id")))
    return consumers


def _key_auth(raw, routes: List[Route]) -> List[KeyAuth]:
    plugins = []
    for i, item in enumerate(raw or []):
        if not isinstance(item, dict) or item.get("name") != "key-auth":
            raise ValueError(f"plugins[{i}]: only key-auth is supported (the prometheus plugin is built in)")
        service, route, config = item.get("service"), item.get("route"), item.get("config") or {}
        if service is not None and service not in {r.service for r in routes}:
            raise ValueError(f"plugins[{i}]: no route has service {service!r}")
        if route is not None and route not in {r.route for r in routes}:
            raise ValueError(f"plugins[{i}]: no route is named {route!r}")
        unknown = set(config) - {"key_names", "key_in_header", "key_in_query"}
        if unknown:
            raise ValueError(f"plugins[{i}].config: unsupported {', '.join(sorted(unknown))}")
        names = config.get("key_names", ["apikey"])
        if not isinstance(names, list) or not names or any(not isinstance(n, str) or not n for n in names):
            raise ValueError(f"plugins[{i}].config.key_names must be a list of names")
        plugins.append(KeyAuth(service, route, tuple(names), bool(config.get("key_in_header", True)),
                               bool(config.get("key_in_query", True))))
    return plugins


def _traffic(raw, consumers: List[Consumer]) -> dict:
    """The traffic section, each mix entry's ``consumers`` resolved to (username, key) senders."""
    traffic = dict(raw or {})
    by_name = {c.username: c for c in consumers}
    mix = []
    for i, entry in enumerate(traffic.get("mix") or []):
        entry = dict(entry)
        names = entry.get("consumers") or []
        unknown = [n for n in names if n not in by_name or not by_name[n].keys]
        if unknown:
            raise ValueError(f"traffic.mix[{i}]: no consumer with a key named {', '.join(map(str, unknown))}")
        entry["senders"] = [(n, by_name[n].keys[0]) for n in names]
        mix.append(entry)
    if "mix" in traffic:
        traffic["mix"] = mix
    return traffic


def load_config(path: str, variables: Optional[Dict[str, str]] = None, gateway: Optional[str] = None) -> GatewayConfig:
    """The configuration in ``path``; ``gateway`` (the first of GATEWAY) overrides its ``gateway:``."""
    with open(path) as f:
        text = string.Template(f.read()).safe_substitute(variables or {})
    raw = yaml.safe_load(text) or {}
    schema = str(raw.get("schema", "3.7"))
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, got {schema!r}")
    gateway = gateway or str(raw.get("gateway", "kong"))
    if gateway not in GATEWAYS:
        raise ValueError(f"gateway must be one of {', '.join(GATEWAYS)}, got {gateway!r}")
    routes = []
    for i, item in enumerate(raw.get("routes", [])):
        missing = [k for k in ("path_prefix", "upstream", "service", "route") if not item.get(k)]
        if missing:
            raise ValueError(f"routes[{i}] lacks {', '.join(missing)}")
        routes.append(Route(item["path_prefix"], item["upstream"].rstrip("/"), item["service"], item["route"]))
    per_consumer = raw.get("per_consumer", True)
    if not isinstance(per_consumer, bool):
        raise ValueError(f"per_consumer must be true or false, got {per_consumer!r}")
    consumers = _consumers(raw.get("consumers"))
    default = raw.get("default_response") or {}
    return GatewayConfig(schema, routes, (int(default.get("status_code", 404)),
                                          default.get("body", '{"message":"no Route matched with those values"}')),
                         _traffic(raw.get("traffic"), consumers), consumers, _key_auth(raw.get("plugins"), routes),
                         per_consumer, gateway)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


class KongMetrics:
    """Counters as one Kong node keeps them (thread-safe); ``reset()`` is a node restart."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.bandwidth: Dict[tuple, float] = {}  # (service, route, direction, consumer, workspace)
            self.requests: Dict[tuple, int] = {}  # (service, route, code, consumer, workspace, source)
            self.latency: Dict[tuple, List[float]] = {}  # (kind, service, route, workspace) -> observations
            self.apisix: Dict[tuple, float] = {}  # (service, route, type, consumer, node): wire bytes
            self.bodies: Dict[tuple, float] = {}  # (service, code, method, direction): Traefik's body bytes
            self.upstream: Dict[tuple, float] = {}  # (cluster, direction): Envoy's upstream connection bytes

    def set_bandwidth(self, service, route, direction, value, consumer="", workspace="default") -> None:
        with self._lock:
            self.bandwidth[(service, route, direction, consumer, workspace)] = value

    def record(self, service, route, status, bytes_in, bytes_out, request_latency_ms, upstream_latency_ms=0.0,
               kong_latency_ms=0.0, consumer="", workspace="default", source="service", node="", method="GET",
               bodies=None, upstream=None) -> None:
        """One logged request. ``source`` is who answered: "service" (the upstream) or "kong"
        (the gateway itself: an auth refusal, a termination, no upstream), as Kong labels it.
        The other gateways' counts: ``bodies`` (request, response body bytes) when the request
        reached the service, ``upstream`` (bytes sent to, received from it) when it answered."""
        with self._lock:
            for direction, n in (("ingress", bytes_in), ("egress", bytes_out)):
                key = (service, route, direction, consumer, node)
                self.apisix[key] = self.apisix.get(key, 0) + n
            for direction, n in zip(("ingress", "egress"), bodies or ()):
                key = (service, str(status), method, direction)
                self.bodies[key] = self.bodies.get(key, 0) + n
            for direction, n in zip(("ingress", "egress"), upstream or ()):
                self.upstream[(service, direction)] = self.upstream.get((service, direction), 0) + n
            for direction, n in (("ingress", bytes_in), ("egress", bytes_out)):
                key = (service, route, direction, consumer, workspace)
                self.bandwidth[key] = self.bandwidth.get(key, 0) + n
            key = (service, route, str(status), consumer, workspace, source)
            self.requests[key] = self.requests.get(key, 0) + 1
            for kind, value in (("request", request_latency_ms), ("upstream", upstream_latency_ms),
                                ("kong", kong_latency_ms)):
                self.latency.setdefault((kind, service, route, workspace), []).append(value)

    def render_gateway(self, gateway: str) -> str:
        """The bandwidth series as APISIX, Traefik or Envoy export them (docs/gateway-metrics.md)."""
        with self._lock:
            apisix, bodies, upstream = dict(self.apisix), dict(self.bodies), dict(self.upstream)
        out = []
        if gateway == "apisix":  # apisix/plugins/prometheus/exporter.lua, labels in declaration order
            out += ["# HELP apisix_bandwidth Total bandwidth in bytes consumed per service in APISIX",
                    "# TYPE apisix_bandwidth counter"]
            for (s, r, d, c, node), v in sorted(apisix.items()):
                pairs = [("type", d), ("route", r), ("service", s), ("consumer", c), ("node", node),
                         ("request_type", "traditional_http"), ("request_llm_model", ""), ("llm_model", "")]
                out.append(f"apisix_bandwidth{_labels(pairs)} {v:g}")
        elif gateway == "traefik":  # pkg/metrics/prometheus.go; client_golang sorts the labels
            for direction, name, help_text in (
                    ("ingress", "traefik_service_requests_bytes_total", "The total size of requests in bytes received "
                     "by a service, partitioned by status code, protocol, and method."),
                    ("egress", "traefik_service_responses_bytes_total", "The total size of responses in bytes returned "
                     "by a service, partitioned by status code, protocol, and method.")):
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
                for (s, code, method, d), v in sorted(bodies.items()):
                    if d == direction:
                        pairs = [("code", code), ("method", method), ("protocol", "http"), ("service", f"{s}@file")]
                        out.append(f"{name}{_labels(pairs)} {v:g}")
        elif gateway == "envoy":  # /stats/prometheus: a TYPE line, no HELP
            for direction, name in (("egress", "envoy_cluster_upstream_cx_rx_bytes_total"),
                                    ("ingress", "envoy_cluster_upstream_cx_tx_bytes_total")):
                out.append(f"# TYPE {name} counter")
                for (s, d), v in sorted(upstream.items()):
                    if d == direction:
                        out.append(f"{name}{_labels([('envoy_cluster_name', s)])} {v:g}")
        else:
            raise ValueError(f"gateway must be one of {', '.join(GATEWAYS)}, got {gateway!r}")
        return "\n".join(out) + "\n"

    def render(self, schema: str = "3.7") -> str:
        with self._lock:
            bandwidth, req, latency = dict(self.bandwidth), dict(self.requests), dict(self.latency)
        ws = schema == "3.7"
        out = []
        if schema == "2":
            out += ["# HELP kong_bandwidth Total bandwidth in bytes consumed per service/route in Kong",
                    "# TYPE kong_bandwidth counter"]
            by_type: Dict[tuple, float] = {}
            for (s, r, d, _c, _w), v in bandwidth.items():  # 2.x has no consumer label: one series
                by_type[(s, r, d)] = by_type.get((s, r, d), 0) + v
            for (s, r, d), v in sorted(by_type.items()):
                out.append(f"kong_bandwidth{_labels([('service', s), ('route', r), ('type', d)])} {v:g}")
            out += ["# HELP kong_http_status HTTP status codes per service/route in Kong",
                    "# TYPE kong_http_status counter"]
            status: Dict[tuple, int] = {}
            for (s, r, code, _c, _w, _src), v in req.items():  # 2.x has neither consumer nor source
                status[(s, r, code)] = status.get((s, r, code), 0) + v
            for (s, r, code), v in sorted(status.items()):
                out.append(f"kong_http_status{_labels([('service', s), ('route', r), ('code', code)])} {v}")
            out += ["# HELP kong_latency Latency added by Kong, total request time and upstream latency "
                    "for each service/route in Kong", "# TYPE kong_latency histogram"]
            for (kind, s, r, _w), values in sorted(latency.items()):
                out += self._histogram("kong_latency", [("service", s), ("route", r), ("type", kind)], values)
        else:
            out += ["# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes",
                    "# TYPE kong_bandwidth_bytes counter"]
            for (s, r, d, c, w), v in sorted(bandwidth.items()):
                pairs = [("service", s), ("route", r), ("direction", d)] + ([("workspace", w)] if ws else []) \
                    + [("consumer", c)]
                out.append(f"kong_bandwidth_bytes{_labels(pairs)} {v:g}")
            out += ["# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong",
                    "# TYPE kong_http_requests_total counter"]
            for (s, r, code, c, w, src), v in sorted(req.items()):
                pairs = [("service", s), ("route", r), ("code", code), ("source", src)] \
                    + ([("workspace", w)] if ws else []) + [("consumer", c)]
                out.append(f"kong_http_requests_total{_labels(pairs)} {v}")
            for kind, name, help_text in (
                    ("kong", "kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each service/route in Kong"),
                    ("request", "kong_request_latency_ms", "Total latency incurred during requests for each service/route in Kong"),
                    ("upstream", "kong_upstream_latency_ms", "Latency added by upstream response for each service/route in Kong")):
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                for (k, s, r, w), values in sorted(latency.items()):
                    if k == kind:
                        out += self._histogram(name, [("service", s), ("route", r)] + ([("workspace", w)] if ws else []),
                                               values)
        return "\n".join(out) + "\n"

    @staticmethod
    def _histogram(name: str, pairs, values: List[float]) -> List[str]:
        lines = []
        for le in LATENCY_BUCKETS:
            count = sum(1 for v in values if v <= le)
            lines.append(f"{name}_bucket{_labels(pairs + [('le', f'{le:07.1f}')])} {count}")
        lines.append(f"{name}_bucket{_labels(pairs + [('le', '+Inf')])} {len(values)}")
        lines.append(f"{name}_count{_labels(pairs)} {len(values)}")
        lines.append(f"{name}_sum{_labels(pairs)} {sum(values):g}")
        return lines


class InMemoryStats:
    """Traffic the gateway served: success (100-399) / error (400+) and latencies (nearest rank)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.success = self.error = 0
        self.latencies: List[float] = []

    def record(self, status: int, latency_ms: float) -> None:
        with self._lock:
            if status >= 400:
                self.error += 1
            else:
                self.success += 1
            self.latencies.append(latency_ms)

    def snapshot(self) -> dict:
        with self._lock:
            values = sorted(self.latencies)
            success, error = self.success, self.error

        def rank(q):
            return round(values[max(0, math.ceil(q * len(values)) - 1)], 3) if values else None

        return {"requests_count": {"success": success, "error": error},
                "latency_ms": {"average": round(sum(values) / len(values), 3) if values else None,
                               "p95": rank(0.95), "p99": rank(0.99)}}


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""

    handler_class = BaseHTTPRequestHandler

    def start(self, host: str = "127.0.0.1", port: int = 0):
        owner = self

        class Handler(self.handler_class):
            server_owner = owner

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = parse_qs(urlsplit(self.path).query)
        size = int(query.get("size", ["512"])[0])
        status = int(query.get("status", ["200"])[0])
        delay = int(query.get("delay_ms", ["0"])[0])
        if delay:
            time.sleep(delay / 1000)
        body = b"x" * size
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


class DemoUpstream(_Server):
    """Answers any path with ``?size=N`` bytes, ``?status=N``, after ``?delay_ms=N``."""

    handler_class = _UpstreamHandler


class _CountingWriter:
    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def write(self, data) -> int:
        self.count += len(data)
        return self.raw.write(data)

    def flush(self):
        return self.raw.flush()

    def __getattr__(self, name):
        return getattr(self.raw, name)


def _request_size(request) -> int:
    """The bytes of a request as sent upstream: request line, headers and body."""
    path = urlsplit(request.url)
    target = (path.path or "/") + (f"?{path.query}" if path.query else "")
    body = request.body or b""
    return len(f"{request.method} {target} HTTP/1.1\r\n") + _headers_size(request.headers) + \
        len(body if isinstance(body, bytes) else body.encode())


def _response_size(answer) -> int:
    """The bytes of the upstream's response as received: status line, headers and body."""
    return len(f"HTTP/1.1 {answer.status_code} {answer.reason}\r\n") + _headers_size(answer.raw.headers) + \
        len(answer.content)


def _headers_size(headers) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.wfile = _CountingWriter(self.wfile)

    def _reply(self, status: int, body: bytes, headers: Dict[str, str]) -> int:
        """Send a response; return the bytes written (status line, headers, body), as Kong's egress counts."""
        before = self.wfile.count
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        return self.wfile.count - before

    def _proxy(self):
        gateway: DevGateway = self.server_owner
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if self.command == "GET" and path == "/metrics":
            query = parse_qs(urlsplit(self.path).query)
            speaks = query.get("gateway", [gateway.config.gateway])[0]
            schema = query.get("schema", [gateway.config.schema])[0]
            text = gateway.metrics.render(schema) if speaks == "kong" else gateway.metrics.render_gateway(speaks)
            self._reply(200, text.encode(), {"Content-Type": "text/plain; version=0.0.4"})
            return
        if self.command == "GET" and path == "/stats":
            self._reply(200, json.dumps(gateway.stats.snapshot()).encode(), {"Content-Type": "application/json"})
            return
        # Request length as received: request line, headers and body.
        bytes_in = len(self.requestline) + 2 + sum(len(k) + len(v) + 4 for k, v in self.headers.items()) + 2 + len(body)
        route = gateway.match(path)
        if route is None:
            status, text = gateway.config.default_response
            self._reply(status, text.encode(), {"Content-Type": "application/json"})
            gateway.stats.record(status, (time.monotonic() - started) * 1000)
            return
        # Kong's plugin order: key-auth (priority 1250) first, then request-termination (2),
        # whose configuration may be the authenticated consumer's; prometheus logs them all.
        consumer, refusal = authenticate(gateway.config, route, list(self.headers.items()), urlsplit(self.path).query)
        label = gateway.consumer_label(consumer)
        if refusal is not None:
            content = json.dumps({"message": refusal.message, **gateway.request_id()}).encode()
            headers = {"Content-Type": "application/json; charset=utf-8"}
            if refusal.www_authenticate:
                headers["WWW-Authenticate"] = refusal.www_authenticate
            self._answered_by_kong(route, 401, content, headers, bytes_in, started, label)
            return
        termination = None
        if gateway.admin is not None:
            termination = gateway.admin.termination(route.service, consumer_id=consumer.id if consumer else None)
        if termination is not None:
            # Kong's request-termination: answered at the gateway, never proxied; the prometheus
            # plugin still logs it, so the refusal's bytes are counted like any response.
            if termination.get("body") is not None:
                content = str(termination["body"]).encode()
                content_type = termination.get("content_type") or "application/json; charset=utf-8"
            else:
                content = json.dumps({"message": termination.get("message") or "Service unavailable"}).encode()
                content_type = "application/json; charset=utf-8"
            status = int(termination.get("status_code", 503))
            self._answered_by_kong(route, status, content, {"Content-Type": content_type}, bytes_in, started, label)
            return
        rest = path[len(route.path_prefix):]
        query = urlsplit(self.path).query
        url = route.upstream + ("/" + rest.lstrip("/") if rest else "") + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream_started = time.monotonic()
        upstream_bytes = None
        try:
            answer = requests.request(self.command, url, headers=headers, data=body, timeout=(1, 30))
            status, content = answer.status_code, answer.content
            reply_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            source = "service"
            upstream_bytes = (_request_size(answer.request), _response_size(answer))
        except requests.RequestException:
            status, content = 503, b'{"message":"failure to get a peer from the ring-balancer"}'
            reply_headers = {"Content-Type": "application/json"}
            source = "kong"
        upstream_ms = (time.monotonic() - upstream_started) * 1000
        bytes_out = self._reply(status, content, reply_headers)
        total_ms = (time.monotonic() - started) * 1000
        gateway.metrics.record(route.service, route.route, status, bytes_in, bytes_out, total_ms, upstream_ms,
                               max(0.0, total_ms - upstream_ms), consumer=label, source=source,
                               node=urlsplit(route.upstream).netloc, method=self.command,
                               bodies=(len(body), len(content)), upstream=upstream_bytes)
        gateway.stats.record(status, total_ms)

    def _answered_by_kong(self, route: Route, status: int, content: bytes, headers: Dict[str, str],
                          bytes_in: int, started: float, consumer: str) -> None:
        gateway: DevGateway = self.server_owner
        bytes_out = self._reply(status, content, headers)
        total_ms = (time.monotonic() - started) * 1000
        gateway.metrics.record(route.service, route.route, status, bytes_in, bytes_out, total_ms, 0.0, total_ms,
                               consumer=consumer, source="kong")
        gateway.stats.record(status, total_ms)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _proxy

    def log_message(self, *args):
        pass


class DevGateway(_Server):
    handler_class = _GatewayHandler

    def __init__(self, config: GatewayConfig, stats: Optional[InMemoryStats] = None,
                 metrics: Optional[KongMetrics] = None, admin=None):
        self.config = config
        self.admin = admin  # localrun.kongadmin.AdminState: plugins the proxy honours (None: no Admin API)
        self.stats = stats or InMemoryStats()
        self.metrics = metrics or KongMetrics()
        if admin is not None:
            # One database behind both, as in Kong: the Admin API knows the configured consumers.
            for consumer in config.consumers:
                admin.add_consumer(consumer.username, custom_id=consumer.custom_id)

    def consumer_label(self, consumer: Optional[Consumer]) -> str:
        """The prometheus plugin's consumer label: the username, only with per_consumer on."""
        if consumer is None or not self.config.per_consumer:
            return ""
        return consumer.username or ""

    def request_id(self) -> Dict[str, str]:
        """Kong 3.5+ puts a request id in the errors it answers itself (schema 3.7 here)."""
        return {"request_id": uuid.uuid4().hex} if self.config.schema == "3.7" else {}

    @property
    def services(self) -> List[str]:
        return sorted({r.service for r in self.config.routes})

    def match(self, path: str) -> Optional[Route]:
        matches = [r for r in self.config.routes if path.startswith(r.path_prefix)]
        return max(matches, key=lambda r: len(r.path_prefix)) if matches else None


DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "gateway.yaml")


def main(argv=None) -> None:
    """``python -m localrun.devgateway upstream|gateway``: serve the demo upstream, or the
    gateway with the demo configuration, in the foreground (used by docker compose)."""
    import argparse

    parser = argparse.ArgumentParser(description="Development gateway and demo upstream")
    parser.add_argument("role", choices=("upstream", "gateway"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream-url", default="http://127.0.0.1:8080")
    # the format /metrics speaks: the first of GATEWAY, as the collector reading it is configured
    parser.add_argument("--gateway", choices=GATEWAYS,
                        default=(os.environ.get("GATEWAY") or "kong").split(",")[0].strip().lower())
    args = parser.parse_args(argv)
    if args.role == "upstream":
        server = DemoUpstream().start(args.host, args.port)
    else:
        config = load_config(DEMO_CONFIG, {"UPSTREAM_URL": args.upstream_url}, gateway=args.gateway)
        server = DevGateway(config).start(args.host, args.port)
    print(f"serving {args.role} on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
