"""A development gateway scraped by the real Prometheus every second, the collector configured
to read it from the start: the pipeline the gateway tests send known traffic through."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Tuple

from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig
from tests.support.config import Configuration


@contextmanager
def scraped_gateway(config: Configuration, prometheus_factory,
                    gateway_config: Callable[[str], GatewayConfig]) -> Iterator[Tuple]:
    """(gateway, prometheus) for the gateway config ``gateway_config(upstream_url)`` builds, and
    the test's configuration reading that Prometheus; stopped afterwards."""
    upstream = DemoUpstream().start()
    gateway = DevGateway(gateway_config(upstream.url)).start()
    try:
        prometheus = prometheus_factory.start([gateway.url.split("//")[1]], scrape_interval="1s")
        config.set(PROMETHEUS_URL=prometheus.url, COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=2).start()
        yield gateway, prometheus
    finally:
        gateway.stop()
        upstream.stop()
