"""A development gateway that behaves like Kong where Kong cannot run.

It proxies requests by path prefix to upstreams, answers a default response when no
route matches and 503 when the upstream is down, keeps traffic stats (``GET /stats``),
and serves ``GET /metrics`` in Kong's Prometheus exposition format (2.x, 3.0 or 3.7
schema): bandwidth counted like Kong (request length in, bytes sent out), request
counters by status, and latency histograms with Kong's buckets.
"""
from __future__ import annotations

import json
import math
import os
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import requests
import yaml

SCHEMAS = ("2", "3.0", "3.7")
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


@dataclass
class GatewayConfig:
    schema: str = "3.7"
    routes: List[Route] = field(default_factory=list)
    default_response: Tuple[int, str] = (404, '{"message":"no Route matched with those values"}')
    traffic: dict = field(default_factory=dict)


def load_config(path: str, variables: Optional[Dict[str, str]] = None) -> GatewayConfig:
    with open(path) as f:
        text = string.Template(f.read()).safe_substitute(variables or {})
    raw = yaml.safe_load(text) or {}
    schema = str(raw.get("schema", "3.7"))
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, got {schema!r}")
    routes = []
    for i, item in enumerate(raw.get("routes", [])):
        missing = [k for k in ("path_prefix", "upstream", "service", "route") if not item.get(k)]
        if missing:
            raise ValueError(f"routes[{i}] lacks {', '.join(missing)}")
        routes.append(Route(item["path_prefix"], item["upstream"].rstrip("/"), item["service"], item["route"]))
    default = raw.get("default_response") or {}
    return GatewayConfig(schema, routes, (int(default.get("status_code", 404)),
                                          default.get("body", '{"message":"no Route matched with those values"}')),
                         raw.get("traffic") or {})


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
            self.requests: Dict[tuple, int] = {}  # (service, route, code, consumer, workspace)
            self.latency: Dict[tuple, List[float]] = {}  # (kind, service, route, workspace) -> observations

    def set_bandwidth(self, service, route, direction, value, consumer="", workspace="default") -> None:
        with self._lock:
            self.bandwidth[(service, route, direction, consumer, workspace)] = value

    def record(self, service, route, status, bytes_in, bytes_out, request_latency_ms, upstream_latency_ms=0.0,
               kong_latency_ms=0.0, consumer="", workspace="default") -> None:
        with self._lock:
            for direction, n in (("ingress", bytes_in), ("egress", bytes_out)):
                key = (service, route, direction, consumer, workspace)
                self.bandwidth[key] = self.bandwidth.get(key, 0) + n
            key = (service, route, str(status), consumer, workspace)
            self.requests[key] = self.requests.get(key, 0) + 1
            for kind, value in (("request", request_latency_ms), ("upstream", upstream_latency_ms),
                                ("kong", kong_latency_ms)):
                self.latency.setdefault((kind, service, route, workspace), []).append(value)

    def render(self, schema: str = "3.7") -> str:
        with self._lock:
            bandwidth, req, latency = dict(self.bandwidth), dict(self.requests), dict(self.latency)
        ws = schema == "3.7"
        out = []
        if schema == "2":
            out += ["# HELP kong_bandwidth Total bandwidth in bytes consumed per service/route in Kong",
                    "# TYPE kong_bandwidth counter"]
            for (s, r, d, _c, _w), v in sorted(bandwidth.items()):
                out.append(f"kong_bandwidth{_labels([('service', s), ('route', r), ('type', d)])} {v:g}")
            out += ["# HELP kong_http_status HTTP status codes per service/route in Kong",
                    "# TYPE kong_http_status counter"]
            for (s, r, code, _c, _w), v in sorted(req.items()):
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
            for (s, r, code, c, w), v in sorted(req.items()):
                pairs = [("service", s), ("route", r), ("code", code), ("source", "service")] \
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
            schema = parse_qs(urlsplit(self.path).query).get("schema", [gateway.config.schema])[0]
            self._reply(200, gateway.metrics.render(schema).encode(), {"Content-Type": "text/plain; version=0.0.4"})
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
        termination = gateway.admin.termination(route.service) if gateway.admin is not None else None
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
            bytes_out = self._reply(status, content, {"Content-Type": content_type})
            total_ms = (time.monotonic() - started) * 1000
            gateway.metrics.record(route.service, route.route, status, bytes_in, bytes_out, total_ms, 0.0, total_ms)
            gateway.stats.record(status, total_ms)
            return
        rest = path[len(route.path_prefix):]
        query = urlsplit(self.path).query
        url = route.upstream + ("/" + rest.lstrip("/") if rest else "") + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream_started = time.monotonic()
        try:
            answer = requests.request(self.command, url, headers=headers, data=body, timeout=(1, 30))
            status, content = answer.status_code, answer.content
            reply_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        except requests.RequestException:
            status, content = 503, b'{"message":"failure to get a peer from the ring-balancer"}'
            reply_headers = {"Content-Type": "application/json"}
        upstream_ms = (time.monotonic() - upstream_started) * 1000
        bytes_out = self._reply(status, content, reply_headers)
        total_ms = (time.monotonic() - started) * 1000
        gateway.metrics.record(route.service, route.route, status, bytes_in, bytes_out, total_ms, upstream_ms,
                               max(0.0, total_ms - upstream_ms))
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
    args = parser.parse_args(argv)
    if args.role == "upstream":
        server = DemoUpstream().start(args.host, args.port)
    else:
        server = DevGateway(load_config(DEMO_CONFIG, {"UPSTREAM_URL": args.upstream_url})).start(args.host, args.port)
    print(f"serving {args.role} on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
