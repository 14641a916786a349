"""Real local servers for the integration tier: a moto server process (AWS) and Prometheus.

Session-scoped; everything started here is stopped at the end of the session."""
from __future__ import annotations


import pytest
import requests

from localrun.processes import start_moto_server, stop_process
from localrun.prometheus import PrometheusServer, build_tsdb, ensure_installed
from tests.support.listening import start_ours


@pytest.fixture(scope="session")
def moto_server():
    """`moto_server` as a separate process on 127.0.0.1; yields its URL."""
    process, url = start_ours(start_moto_server)
    yield url
    stop_process(process)


@pytest.fixture
def aws_server(moto_server, config):
    """The test's configuration pointed at the moto server, with a fresh usage table for this
    test; yields those settings, the app started from them."""
    from chalicelib.core import tables

    config.set(AWS_ENDPOINT_URL=moto_server)
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    settings = config.start().settings
    tables.ensure_table()
    yield settings


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory):
    """Start Prometheus instances: ``start(targets=[...])`` scraping live exporters, or
    ``from_history(openmetrics_text)`` serving exact history built with promtool."""
    ensure_installed()
    started = []

    class Factory:
        @staticmethod
        def start(targets, scrape_interval="1s"):
            server = PrometheusServer(targets=targets, scrape_interval=scrape_interval).start().wait_ready()
            started.append(server)
            return server

        @staticmethod
        def from_history(openmetrics_text):
            data_dir = str(tmp_path_factory.mktemp("tsdb"))
            build_tsdb(openmetrics_text, data_dir)
            server = PrometheusServer(targets=[], data_dir=data_dir).start().wait_ready()
            started.append(server)
            return server

    yield Factory
    for server in started:
        server.stop()
