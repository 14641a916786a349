"""Consumers at the development gateway do not change what today's collector stores: the
per-consumer series of a service (and its refused, anonymous requests) add up to the service's
exact bytes, through the real Prometheus and the collector into the moto server."""
import time

import pytest
import requests

from chalicelib import bootstrap
from localrun.devgateway import Consumer, GatewayConfig, KeyAuth, Route
from tests.support.pipeline import scraped_gateway


@pytest.fixture
def pipeline(aws_server, config, prometheus_factory):
    def gateway_config(upstream):
        return GatewayConfig("3.7", [Route("/shop", upstream, "shop", "cart")],
                             consumers=[Consumer(name, (f"{name}-key",)) for name in ("acme", "globex", "initech")],
                             key_auth=[KeyAuth(service="shop")])
    with scraped_gateway(config, prometheus_factory, gateway_config) as parts:
        yield parts


def test_a_services_bytes_are_the_sum_of_its_consumers(pipeline):
    gateway, prometheus = pipeline
    started = time.time()
    for name, count in (("acme", 5), ("globex", 3), ("initech", 1)):
        for _ in range(count):
            answer = requests.get(f"{gateway.url}/shop/item", params={"size": 1500}, headers={"apikey": f"{name}-key"})
            assert answer.status_code == 200
    assert requests.get(f"{gateway.url}/shop/item").status_code == 401  # refused: anonymous, still bytes
    deadline = time.monotonic() + 5  # the gateway logs a request just after answering it, as Kong
    while sum(gateway.metrics.requests.values()) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    prometheus.wait_for_samples("sum(kong_http_requests_total) == 10", timeout=20)  # scraped after the last
    per_consumer = {}
    for (service, _, direction, consumer, _), value in gateway.metrics.bandwidth.items():
        per_consumer[(consumer, direction)] = per_consumer.get((consumer, direction), 0) + value
    assert {c for c, _ in per_consumer} == {"acme", "globex", "initech", ""}
    now = time.time()
    report = bootstrap.current().collector.run(now=now - now % 60 + 60)  # whole current minute: all samples exist
    assert report.status == "ok" and report.series_seen == 8  # 4 consumers ("" included) x 2 directions
    total = bootstrap.current().store.range_total("shop", int(started) // 60 * 60 - 120, int(now) // 60 * 60 + 60)
    assert total.egress == sum(v for (_, d), v in per_consumer.items() if d == "egress") > 9 * 1500
    assert total.ingress == sum(v for (_, d), v in per_consumer.items() if d == "ingress")
