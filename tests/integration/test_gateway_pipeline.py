"""Known traffic through the development gateway, scraped by the real Prometheus, stored by the
collector in the moto server, read back as stats: counts exact, quantiles within one bucket."""
import bisect
import time

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.api.charts import Coverage
from chalicelib.api.stats import service_stats
from localrun.devgateway import LATENCY_BUCKETS, GatewayConfig, Route
from tests.support.pipeline import scraped_gateway


def bucket_of(ms):
    return bisect.bisect_left(LATENCY_BUCKETS, ms)


@pytest.fixture
def pipeline(aws_server, config, prometheus_factory):
    with scraped_gateway(config, prometheus_factory,
                         lambda upstream: GatewayConfig("3.7", [Route("/shop", upstream, "shop", "cart")])) as parts:
        yield parts


def test_stats_match_the_traffic_sent(pipeline):
    gateway, prometheus = pipeline
    started = time.time()
    for i in range(30):
        assert requests.get(f"{gateway.url}/shop/item", params={"size": 1000, "delay_ms": 30}).status_code == 200
    for i in range(10):
        requests.get(f"{gateway.url}/shop/item", params={"size": 10, "delay_ms": 150, "status": 502})
    requests.get(f"{gateway.url}/elsewhere")  # no route: the default response, not a service's traffic
    prometheus.wait_for_samples('kong_http_requests_total{code="502"} == 10', timeout=20)
    expected_egress = sum(v for (s, r, d, *_), v in gateway.metrics.bandwidth.items() if d == "egress")
    now = time.time()
    report = bootstrap.current().collector.run(now=now - now % 60 + 60)  # whole current minute: all samples exist
    assert report.status == "ok"
    store = bootstrap.current().store
    stats = service_stats(store, Coverage.from_state(store.state()), "shop", int(started) - 120, int(now) + 60, None)
    assert stats["requests_count"] == {"success": 30, "error": 10}
    assert stats["by_status"] == {"200": 30, "502": 10}
    gateway_view = gateway.stats.snapshot()["latency_ms"]
    assert bucket_of(stats["latency_ms"]["p95"]) == bucket_of(gateway_view["p95"])
    assert bucket_of(stats["latency_ms"]["p99"]) == bucket_of(gateway_view["p99"])
    egress = store.range_total("shop", int(started) // 60 * 60 - 120, int(now) // 60 * 60 + 60).egress
    assert egress == expected_egress > 30 * 1000
