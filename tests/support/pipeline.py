"""A development gateway scraped by the real Prometheus every second, the collector configured
to read it from the start: the pipeline the gateway tests send known traffic through."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Tuple

from chalicelib import bootstrap
from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig


@contextmanager
def scraped_gateway(env, prometheus_factory, config: Callable[[str], GatewayConfig]) -> Iterator[Tuple]:
    """(gateway, prometheus) for the config ``config(upstream_url)`` builds; stopped afterwards."""
    upstream = DemoUpstream().start()
    gateway = DevGateway(config(upstream.url)).start()
    try:
        prometheus = prometheus_factory.start([gateway.url.split("//")[1]], scrape_interval="1s")
        env.setenv("PROMETHEUS_URL", prometheus.url)
        env.setenv("COLLECT_LAG_SECONDS", "0")
        env.setenv("INITIAL_BACKFILL_MINUTES", "2")
        bootstrap.reset()
        yield gateway, prometheus
    finally:
        gateway.stop()
        upstream.stop()
