"""A moto server and `chalice local` configured with API keys and tight throttling, for the
access and CLI integration tests. One per test module; everything is stopped afterwards and
the environment this process changed is restored."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest
import requests

from localrun.prometheus import free_port
from tests.conftest import BASE_ENV
from tests.support.servers import start_moto_server, stop_process

ROOT = Path(__file__).resolve().parents[2]
CHALICE_CONFIG = {"version": "2.0", "app_name": "bandwidth-meter",
                  "stages": {"local": {"environment_variables": {"STAGE": "dev"}}}}


def _wait_until_up(url: str, process: subprocess.Popen, what: str, log: Optional[Path] = None,
                   timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} did not start\n{detail}")
            time.sleep(0.2)


def _ensure_chalice_config() -> None:
    path = ROOT / ".chalice" / "config.json"
    if not path.exists():  # only when absent: the deploy configuration belongs elsewhere
        import json

        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(CHALICE_CONFIG, indent=2) + "\n")


@dataclass
class KeyedApi:
    url: str
    aws_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def keyed_api(log_dir: Path, api_env: Dict[str, str]) -> Iterator[KeyedApi]:
    """moto server + `chalice local --stage local` with ``api_env`` (API_KEYS, THROTTLE_*).
    While it runs, this process's environment points at the same table (for seeding)."""
    from chalicelib import bootstrap
    from chalicelib.core import models
    from chalicelib.core import tables

    _ensure_chalice_config()
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    moto, aws_url = start_moto_server()
    patch = pytest.MonkeyPatch()
    api = None
    try:
        for name in list(os.environ):
            if name.startswith(("AWS_", "API_KEYS", "THROTTLE_", "BWMETER_")):
                patch.delenv(name)
        env = {**BASE_ENV, "AWS_ENDPOINT_URL": aws_url, "COLLECT_LAG_SECONDS": "0",
               "INITIAL_BACKFILL_MINUTES": "60"}
        for name, value in env.items():
            patch.setenv(name, value)
        bootstrap.reset()
        settings = bootstrap.settings()
        models.configure(settings.table_name, settings.region, aws_url)
        tables.ensure_table()

        log = log_dir / "chalice-local.log"
        chalice = Path(sys.executable).with_name("chalice")
        with open(log, "wb") as out:
            api = subprocess.Popen([str(chalice), "local", "--stage", "local", "--host", "127.0.0.1",
                                    "--port", str(api_port), "--no-autoreload"],
                                   cwd=ROOT, env={**os.environ, **api_env, "PYTHONUNBUFFERED": "1"},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until_up(f"{api_url}/v1/health", api, "chalice local", log)
        yield KeyedApi(api_url, aws_url, log)
    finally:
        if api is not None:
            stop_process(api)
        stop_process(moto)
        patch.undo()
        bootstrap.reset()


def seed_usage(service: str, minutes: int = 30, egress_per_minute: int = 1000, ingress_per_minute: int = 10,
               requests_per_minute: int = 0, now: Optional[float] = None) -> int:
    """Collect ``minutes`` of steady traffic through the real collector (fed by the fake
    Prometheus), ending at the five-minute boundary before ``now`` so that whole 1m and 5m
    points are final. Returns that end (epoch seconds)."""
    from chalicelib import bootstrap
    from chalicelib.collect.collector import Collector
    from tests.fakes.prometheus import FakePrometheus

    now = time.time() if now is None else now
    first = int(now // 300 * 300) - 60 * minutes
    prom = FakePrometheus()
    base = {"service": service, "consumer": "", "workspace": "default", "instance": "n1", "route": "r"}
    times = [first - 30 + 60 * i for i in range(minutes + 1)]
    prom.add({**base, "__name__": "kong_bandwidth_bytes", "direction": "egress"},
             [(t, egress_per_minute * i) for i, t in enumerate(times)])
    prom.add({**base, "__name__": "kong_bandwidth_bytes", "direction": "ingress"},
             [(t, ingress_per_minute * i) for i, t in enumerate(times)])
    if requests_per_minute:
        prom.add({**base, "__name__": "kong_http_requests_total", "code": "200", "source": "service"},
                 [(t, requests_per_minute * i) for i, t in enumerate(times)])
    settings = bootstrap.settings()
    Collector(prom, bootstrap.store(), settings, quotas=bootstrap.quota_book()).run(now=first + 60 * minutes)
    return first + 60 * minutes
