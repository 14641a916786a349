"""The development gateway on loopback: routing, default response, 503, /stats, /metrics bytes."""
import socket
import time

import pytest
import requests

from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig, Route


def eventually(predicate, timeout=5.0):
    """Like Kong's log phase, the gateway counts a request just after answering it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def gateway():
    upstream = DemoUpstream().start()
    config = GatewayConfig("3.7", [Route("/api", upstream.url, "general", "all"),
                                   Route("/api/pay", upstream.url, "pay", "checkout")],
                           (418, '{"message":"nothing here"}'))
    gw = DevGateway(config).start()
    yield gw, upstream
    gw.stop()


def test_the_longest_prefix_routes_and_the_rest_of_the_path_and_query_pass_on(gateway):
    gw, _ = gateway
    response = requests.get(f"{gw.url}/api/pay/x", params={"size": 321, "status": 201})
    assert (response.status_code, len(response.content)) == (201, 321)
    eventually(lambda: ("pay", "checkout", "egress", "", "default") in gw.metrics.bandwidth)
    requests.post(f"{gw.url}/api/other", data=b"z" * 50)
    eventually(lambda: ("general", "all", "ingress", "", "default") in gw.metrics.bandwidth)


def test_no_route_gives_the_default_response(gateway):
    gw, _ = gateway
    response = requests.get(f"{gw.url}/elsewhere")
    assert response.status_code == 418 and response.json() == {"message": "nothing here"}
    assert gw.metrics.bandwidth == {}


def test_upstream_down_gives_503(gateway):
    gw, upstream = gateway
    upstream.stop()
    response = requests.get(f"{gw.url}/api/pay/x")
    assert response.status_code == 503
    eventually(lambda: any(k[2] == "503" for k in gw.metrics.requests))


def test_stats_count_success_and_error(gateway):
    gw, _ = gateway
    for status in (200, 200, 302, 404, 500):
        requests.get(f"{gw.url}/api/x", params={"status": status}, allow_redirects=False)
    eventually(lambda: sum(requests.get(f"{gw.url}/stats").json()["requests_count"].values()) == 5)
    stats = requests.get(f"{gw.url}/stats").json()
    assert stats["requests_count"] == {"success": 3, "error": 2}
    assert stats["latency_ms"]["p99"] >= stats["latency_ms"]["average"] > 0


def test_metrics_bandwidth_equals_the_bytes_on_the_wire(gateway):
    gw, _ = gateway
    host, port = gw.url.split("//")[1].split(":")
    request = b"POST /api/pay/z?size=700 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with socket.create_connection((host, int(port))) as s:
        s.sendall(request)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    eventually(lambda: 'service="pay"' in gw.metrics.render("3.7"))
    text = requests.get(f"{gw.url}/metrics").text
    egress = [line for line in text.splitlines()
              if line.startswith('kong_bandwidth_bytes{service="pay"') and 'direction="egress"' in line]
    ingress = [line for line in text.splitlines()
               if line.startswith('kong_bandwidth_bytes{service="pay"') and 'direction="ingress"' in line]
    assert float(egress[0].rsplit(" ", 1)[1]) == len(received)
    assert float(ingress[0].rsplit(" ", 1)[1]) == len(request)
