"""The development gateway speaking other gateways' bandwidth series (GATEWAY): what each counts
on loopback, and APISIX's end to end (gateway -> real Prometheus -> collector -> moto server)
with consumers, exact per service, route and consumer."""
import socket
import time

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.collect.gateways import ALL_ROUTES
from chalicelib.core.usage import ANONYMOUS_CONSUMER
from localrun.devgateway import DEMO_CONFIG, Consumer, DemoUpstream, DevGateway, GatewayConfig, KeyAuth, Route, load_config
from tests.integration.test_devgateway import eventually
from tests.support.pipeline import scraped_gateway

CONSUMERS = [Consumer("acme", ("acme-key",)), Consumer("globex", ("globex-key",))]


def gateway_config(upstream_url, gateway):
    return GatewayConfig("3.7", [Route("/pay", upstream_url, "pay", "checkout"),
                                 Route("/media", upstream_url, "media", "assets")],
                         consumers=CONSUMERS, key_auth=[KeyAuth(service="pay")], gateway=gateway)


@pytest.fixture
def upstream():
    server = DemoUpstream().start()
    yield server
    server.stop()


def send_raw(url, request: bytes) -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(request)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return received


def metric_lines(gw, prefix):
    return [line for line in requests.get(f"{gw.url}/metrics").text.splitlines() if line.startswith(prefix)]


def value(line):
    return float(line.rsplit(" ", 1)[1])


def test_apisix_format_counts_the_wire_bytes_with_type_route_service_consumer_and_node(upstream):
    gw = DevGateway(gateway_config(upstream.url, "apisix")).start()
    try:
        request = (b"POST /pay/z?size=700 HTTP/1.1\r\nHost: x\r\napikey: acme-key\r\nContent-Length: 5\r\n"
                   b"Connection: close\r\n\r\nhello")
        received = send_raw(gw.url, request)
        eventually(lambda: metric_lines(gw, "apisix_bandwidth{"))
        node = upstream.url.split("//")[1]
        common = f'route="checkout",service="pay",consumer="acme",node="{node}",request_type="traditional_http",' \
                 'request_llm_model="",llm_model=""}'
        lines = metric_lines(gw, "apisix_bandwidth{")
        assert [value(line) for line in lines if line.startswith('apisix_bandwidth{type="egress",' + common)] == \
            [len(received)]
        assert [value(line) for line in lines if line.startswith('apisix_bandwidth{type="ingress",' + common)] == \
            [len(request)]
        text = requests.get(f"{gw.url}/metrics").text
        assert "# TYPE apisix_bandwidth counter" in text and "kong_" not in text
    finally:
        gw.stop()


def test_traefik_format_counts_bodies_only_and_not_the_gateways_own_refusals(upstream):
    gw = DevGateway(gateway_config(upstream.url, "traefik")).start()
    try:
        requests.post(f"{gw.url}/pay/x", params={"size": 321}, data=b"z" * 50, headers={"apikey": "acme-key"})
        requests.get(f"{gw.url}/pay/x")  # 401 from key-auth: never reaches the service
        eventually(lambda: metric_lines(gw, "traefik_service_responses_bytes_total{"))
        assert metric_lines(gw, "traefik_service_requests_bytes_total{") == [
            'traefik_service_requests_bytes_total{code="200",method="POST",protocol="http",service="pay@file"} 50']
        assert metric_lines(gw, "traefik_service_responses_bytes_total{") == [
            'traefik_service_responses_bytes_total{code="200",method="POST",protocol="http",service="pay@file"} 321']
    finally:
        gw.stop()


def test_envoy_format_counts_the_upstream_connection_per_cluster(upstream):
    gw = DevGateway(gateway_config(upstream.url, "envoy")).start()
    try:
        requests.get(f"{gw.url}/media/x", params={"size": 1000})
        requests.get(f"{gw.url}/pay/x")  # 401: the upstream never sees it
        eventually(lambda: metric_lines(gw, "envoy_cluster_upstream_cx_rx_bytes_total{"))
        (rx,) = metric_lines(gw, "envoy_cluster_upstream_cx_rx_bytes_total{")
        (tx,) = metric_lines(gw, "envoy_cluster_upstream_cx_tx_bytes_total{")
        assert rx.startswith('envoy_cluster_upstream_cx_rx_bytes_total{envoy_cluster_name="media"} ')
        assert tx.startswith('envoy_cluster_upstream_cx_tx_bytes_total{envoy_cluster_name="media"} ')
        # the response's 1000 body bytes plus its status line and headers; the request has no body
        assert 1000 + len("HTTP/1.1 200 OK\r\n") < value(rx) < 1000 + 400
        assert len("GET /x?size=1000 HTTP/1.1\r\n") < value(tx) < 400
    finally:
        gw.stop()


def test_the_demo_configuration_takes_the_gateway_format_and_refuses_an_unknown_one():
    assert load_config(DEMO_CONFIG, {"UPSTREAM_URL": "http://127.0.0.1:1"}).gateway == "kong"
    assert load_config(DEMO_CONFIG, {"UPSTREAM_URL": "http://127.0.0.1:1"}, gateway="apisix").gateway == "apisix"
    with pytest.raises(ValueError, match="gateway must be one of kong, apisix, traefik, envoy, got 'nginx'"):
        load_config(DEMO_CONFIG, {"UPSTREAM_URL": "http://127.0.0.1:1"}, gateway="nginx")


def test_apisix_traffic_is_counted_exactly_end_to_end_per_route_and_consumer(aws_server, config, prometheus_factory):
    config.set(GATEWAY="apisix", COLLECT_TRAFFIC_STATS="false")
    with scraped_gateway(config, prometheus_factory, lambda url: gateway_config(url, "apisix")) as (gateway, prometheus):
        started = time.time()
        for key, size in (("acme-key", 1000), ("globex-key", 3000), ("acme-key", 500)):
            assert requests.get(f"{gateway.url}/pay/x", params={"size": size}, headers={"apikey": key}).ok
        assert requests.get(f"{gateway.url}/pay/x").status_code == 401  # refused by key-auth: still traffic
        assert requests.get(f"{gateway.url}/media/y", params={"size": 7000}).ok
        eventually(lambda: len(gateway.metrics.apisix) == 8)  # pay: 3 consumers x 2 types; media: 2
        truth = dict(gateway.metrics.apisix)
        total = sum(truth.values())
        prometheus.wait_for_samples(f"sum(apisix_bandwidth) == {total:g}", timeout=20)
        now = time.time()
        report = bootstrap.current().collector.run(now=now - now % 60 + 60)
        assert report.status == "ok" and report.schemas == ["apisix"], report
        store = bootstrap.current().store
        start, end = int(started) // 60 * 60 - 120, int(now) // 60 * 60 + 60
        for service in ("pay", "media"):
            got = store.range_total(service, start, end)
            want_consumers = {}
            for (s, r, d, c, _node), n in truth.items():
                if s == service:
                    entry = want_consumers.setdefault(c or ANONYMOUS_CONSUMER, {"ingress": 0, "egress": 0})
                    entry[d] += int(n)
            assert got.consumers == want_consumers, service
            assert got.total == sum(n for (s, *_), n in truth.items() if s == service)
            assert ALL_ROUTES not in got.routes
        assert set(store.range_total("pay", start, end).consumers) == {"acme", "globex", ANONYMOUS_CONSUMER}
