"""Real local servers for the integration tier: a moto server process (AWS) and Prometheus.

Session-scoped; everything started here is stopped at the end of the session."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from localrun.prometheus import PrometheusServer, build_tsdb, ensure_installed, free_port


def start_moto_server():
    """A moto server as a separate process on a free 127.0.0.1 port: (process, url)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return process, url
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                stop_process(process)
                raise RuntimeError("moto server did not start")
            time.sleep(0.2)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="session")
def moto_server():
    """`moto_server` as a separate process on 127.0.0.1; yields its URL."""
    process, url = start_moto_server()
    yield url
    stop_process(process)


@pytest.fixture
def aws_server(moto_server, env):
    """The environment pointed at the moto server, with a fresh usage table for this test."""
    from chalicelib import bootstrap
    from chalicelib.core import models
    from chalicelib.core import tables

    env.setenv("AWS_ENDPOINT_URL", moto_server)
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    bootstrap.reset()
    settings = bootstrap.settings()
    models.configure(settings.table_name, settings.region, moto_server)
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
