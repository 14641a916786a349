"""Each gateway schema (GATEWAY) through the real Prometheus binary: two gateway nodes serve
exposition text shaped exactly like the gateway's own ``/metrics``, Prometheus scrapes them
every second, node a restarts (every counter drops) between two scrapes, and the collector,
against the moto server, stores exact totals per service, route, consumer and direction.

The texts follow the exporters' sources (docs/gateway-metrics.md has the tags and commits):
- Kong 3.7+: kong/plugins/prometheus/exporter.lua (Kong/kong 3.7.0): ``kong_bandwidth_bytes``
  with labels service, route, direction, workspace, consumer, in that order.
- APISIX 3.14+: apisix/plugins/prometheus/exporter.lua (apache/apisix 3.14.0), ``bandwidth``
  with the default prefix ``apisix_``: type, route, service, consumer, node, request_type,
  request_llm_model, llm_model (nginx-lua-prometheus prints them in declaration order).
- Traefik 3.0: pkg/metrics/prometheus.go (traefik/traefik v3.0.0), HELP texts as there;
  client_golang prints labels sorted (code, method, protocol, service).
- Envoy: source/server/admin/prometheus_stats.cc (envoyproxy/envoy), ``/stats/prometheus``: a
  ``# TYPE`` line and no HELP per metric, the cluster name in ``envoy_cluster_name``.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.collect.gateways import ALL_ROUTES, NO_ROUTE
from chalicelib.core.usage import ANONYMOUS_CONSUMER
from chalicelib.core.timeutil import floor_minute


class Exporter:
    """One gateway node's ``/metrics``: whatever text the test sets."""

    def __init__(self):
        self.text = ""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = exporter.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.target = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _labels(pairs) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


# -- each gateway's exposition ------------------------------------------------------------------
# A series: (metric, its labels in the exporter's order, the key it must count under:
# (service, route, consumer, direction)).
Series = Tuple[str, Tuple[Tuple[str, str], ...], Tuple[str, str, str, str]]


def kong_series() -> List[Series]:
    def s(service, route, direction, workspace, consumer, key_service, key_consumer):
        return ("kong_bandwidth_bytes", (("service", service), ("route", route), ("direction", direction),
                                         ("workspace", workspace), ("consumer", consumer)),
                (key_service, route, key_consumer, direction))
    return [  # the same service and consumer names in two workspaces
        s("orders", "orders-v1", "egress", "default", "acme", "orders", "acme"),
        s("orders", "orders-v1", "ingress", "default", "acme", "orders", "acme"),
        s("orders", "orders-v1", "egress", "team-a", "acme", "team-a:orders", "team-a:acme"),
        s("orders", "orders-v1", "egress", "team-a", "", "team-a:orders", ""),
    ]


def kong_text(values: Dict[int, int], series: List[Series]) -> str:
    lines = ["# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes",
             "# TYPE kong_bandwidth_bytes counter"]
    lines += [f"kong_bandwidth_bytes{_labels(labels)} {values[i]}" for i, (_, labels, _) in enumerate(series)]
    lines += ["# HELP kong_nginx_connections_total Number of connections by subsystem",
              "# TYPE kong_nginx_connections_total gauge",
              'kong_nginx_connections_total{node_id="d1f2",subsystem="http",state="active"} 3']
    return "\n".join(lines) + "\n"


def apisix_series() -> List[Series]:
    def s(type_, route, service, consumer, node, key_service):
        return ("apisix_bandwidth", (("type", type_), ("route", route), ("service", service), ("consumer", consumer),
                                     ("node", node), ("request_type", "traditional_http"),
                                     ("request_llm_model", ""), ("llm_model", "")),
                (key_service, route or NO_ROUTE, consumer, type_))
    return [
        s("egress", "1", "7", "acme", "10.0.0.7", "7"),
        s("ingress", "1", "7", "acme", "10.0.0.7", "7"),
        s("egress", "1", "7", "acme", "10.0.0.8", "7"),  # the same route to a second upstream node
        s("egress", "2", "", "", "10.0.0.9", "(unmatched)"),  # a route without a service, no consumer
        s("ingress", "", "", "", "", "(unmatched)"),  # no route matched (the plugin as a global rule)
    ]


def apisix_text(values: Dict[int, int], series: List[Series]) -> str:
    lines = ["# HELP apisix_bandwidth Total bandwidth in bytes consumed per service in APISIX",
             "# TYPE apisix_bandwidth counter"]
    lines += [f"apisix_bandwidth{_labels(labels)} {values[i]}" for i, (_, labels, _) in enumerate(series)]
    lines += ["# HELP apisix_etcd_reachable Config server etcd reachable from APISIX, 0 is unreachable",
              "# TYPE apisix_etcd_reachable gauge", "apisix_etcd_reachable 1"]
    return "\n".join(lines) + "\n"


TRAEFIK_HELP = {
    "traefik_service_requests_bytes_total":
        "The total size of requests in bytes received by a service, partitioned by status code, protocol, and method.",
    "traefik_service_responses_bytes_total":
        "The total size of responses in bytes returned by a service, partitioned by status code, protocol, and method.",
}


def traefik_series() -> List[Series]:
    out = []
    for metric, direction in (("traefik_service_requests_bytes_total", "ingress"),
                              ("traefik_service_responses_bytes_total", "egress")):
        for code, method in (("200", "GET"), ("201", "POST")):
            out.append((metric, (("code", code), ("method", method), ("protocol", "http"), ("service", "orders@file")),
                        ("orders@file", ALL_ROUTES, "", direction)))
    return out


def traefik_text(values: Dict[int, int], series: List[Series]) -> str:
    lines = []
    for metric, help_text in TRAEFIK_HELP.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f"{m}{_labels(labels)} {values[i]}" for i, (m, labels, _) in enumerate(series) if m == metric]
    # router-level counters of the same requests (addRoutersLabels): not read, or they would count twice
    lines += ["# HELP traefik_router_responses_bytes_total The total size of responses in bytes handled by a router, "
              "partitioned by service, status code, protocol, and method.",
              "# TYPE traefik_router_responses_bytes_total counter",
              'traefik_router_responses_bytes_total{code="200",method="GET",protocol="http",router="orders@file",'
              'service="orders@file"} 999999']
    return "\n".join(lines) + "\n"


def envoy_series() -> List[Series]:
    out = []
    for metric, direction in (("envoy_cluster_upstream_cx_rx_bytes_total", "egress"),
                              ("envoy_cluster_upstream_cx_tx_bytes_total", "ingress")):
        for cluster in ("orders_backend", "search_backend"):
            out.append((metric, (("envoy_cluster_name", cluster),), (cluster, ALL_ROUTES, "", direction)))
    return out


def envoy_text(values: Dict[int, int], series: List[Series]) -> str:
    lines = []
    for metric in ("envoy_cluster_upstream_cx_rx_bytes_total", "envoy_cluster_upstream_cx_tx_bytes_total"):
        lines.append(f"# TYPE {metric} counter")
        lines += [f"{m}{_labels(labels)} {values[i]}" for i, (m, labels, _) in enumerate(series) if m == metric]
    # the downstream counter of the same traffic: not read
    lines += ["# TYPE envoy_http_downstream_cx_rx_bytes_total counter",
              'envoy_http_downstream_cx_rx_bytes_total{envoy_http_conn_manager_prefix="ingress_http"} 90211']
    return "\n".join(lines) + "\n"


GATEWAYS = {"kong": (kong_series, kong_text), "apisix": (apisix_series, apisix_text),
            "traefik": (traefik_series, traefik_text), "envoy": (envoy_series, envoy_text)}


# -- three scrapes' worth of counters per node ----------------------------------------------------
def phases(series: List[Series]):
    """Per phase, per node, each series' value. Node a starts high (a lifetime counter), then
    restarts (every counter drops to a small value) and grows; node b grows steadily."""
    a = [{i: 10**9 + 1000 * (i + 1) for i in range(len(series))},
         {i: 17 * (i + 1) for i in range(len(series))},  # the restart
         {i: 17 * (i + 1) + 500 * (i + 2) for i in range(len(series))}]
    b = [{i: 3 * (i + 1) for i in range(len(series))},
         {i: 3 * (i + 1) + 40 * (i + 1) for i in range(len(series))},
         {i: 3 * (i + 1) + 90 * (i + 1) for i in range(len(series))}]
    return [{"a": pa, "b": pb} for pa, pb in zip(a, b)]


def expected(series: List[Series]):
    """Both nodes' series are born inside the collected window, so their first values count;
    node a's restart counts its new value, then what it grew by: a = first + last, b = last."""
    steps = phases(series)
    truth: Dict[Tuple[str, str, str, str], int] = {}
    for i, (_, _, key) in enumerate(series):
        counted = steps[0]["a"][i] + steps[2]["a"][i] + steps[2]["b"][i]
        truth[key] = truth.get(key, 0) + counted
    return truth


def wait_scraped(prometheus, exporter: Exporter, metrics, values: Dict[int, int], series: List[Series]):
    """Until Prometheus' latest sample of each of the node's series is this phase's value."""
    want = sorted(float(values[i]) for i in range(len(series)))
    query = '{__name__=~"%s",instance="%s"}' % ("|".join(sorted(metrics)), exporter.target)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = requests.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
        got = sorted(float(s["value"][1]) for s in result["data"]["result"])
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus did not scrape {exporter.target}'s phase: {got} != {want}")


@pytest.fixture
def nodes():
    a, b = Exporter(), Exporter()
    yield {"a": a, "b": b}
    a.stop()
    b.stop()


@pytest.mark.parametrize("gateway", sorted(GATEWAYS))
def test_each_gateway_counts_exactly_through_prometheus_across_two_nodes_and_a_restart(
        gateway, nodes, aws_server, config, prometheus_factory):
    make_series, render = GATEWAYS[gateway]
    series = make_series()
    metrics = {m for m, _, _ in series}
    steps = phases(series)
    for name, exporter in nodes.items():
        exporter.text = render(steps[0][name], series)
    prometheus = prometheus_factory.start([nodes["a"].target, nodes["b"].target], scrape_interval="1s")
    for step in steps:
        for name, exporter in nodes.items():
            exporter.text = render(step[name], series)
        for name, exporter in nodes.items():
            wait_scraped(prometheus, exporter, metrics, step[name], series)
    config.set(GATEWAY=gateway, PROMETHEUS_URL=prometheus.url,
               PROMETHEUS_SERIES_SELECTOR='job="kong"',  # the harness' scrape job: every query carries it
               COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=2, COLLECT_TRAFFIC_STATS="false")
    config.start()
    end = floor_minute(time.time()) + 60  # the current minute whole: every sample so far is in it
    report = bootstrap.current().collector.run(now=end)
    assert report.status == "ok" and not report.quarantined, report
    store = bootstrap.current().store
    truth = expected(series)
    for service in {key[0] for key in truth}:
        total = store.range_total(service, end - 180, end)
        routes = {(service, route, direction): n for route, entry in total.routes.items()
                  for direction, n in entry.items() if n}
        consumers = {(service, consumer, direction): n for consumer, entry in total.consumers.items()
                     for direction, n in entry.items() if n}
        want_routes: Dict[tuple, int] = {}
        want_consumers: Dict[tuple, int] = {}
        for (s, route, consumer, direction), n in truth.items():
            if s == service:
                want_routes[(s, route, direction)] = want_routes.get((s, route, direction), 0) + n
                c = consumer or ANONYMOUS_CONSUMER
                want_consumers[(s, c, direction)] = want_consumers.get((s, c, direction), 0) + n
        assert routes == want_routes, service
        assert consumers == want_consumers, service
