"""A moto server and `chalice local` configured with API keys and tight throttling, for the
access and CLI integration tests. One per test module; everything is stopped afterwards and
the environment this process changed is restored."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from chalicelib.core.settings import from_env
from localrun.processes import free_port, start_chalice_local, start_moto_server, stop_process
from tests.conftest import configuration_variables
from tests.support.config import BASE_VARIABLES, BOTO_ENV
from tests.support.listening import start_ours

ROOT = Path(__file__).resolve().parents[2]
CHALICE_CONFIG = {"version": "2.0", "app_name": "bandwidth-meter",
                  "stages": {"local": {"environment_variables": {"STAGE": "dev"}}}}


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
def keyed_api(log_dir: Path, api_env: Dict[str, str], project: Optional[Path] = None) -> Iterator[KeyedApi]:
    """moto server + `chalice local --stage local` with ``api_env`` (API_KEYS, THROTTLE_*), from
    this project or from ``project``. While it runs, this process's parts are built from the
    same settings (for seeding); its environment holds only what boto reads."""
    from chalicelib import bootstrap
    from chalicelib.core import tables

    if project is None:
        _ensure_chalice_config()
    moto, aws_url = start_ours(start_moto_server)
    patch = pytest.MonkeyPatch()
    api = None
    try:
        for name in configuration_variables():  # every declared setting, not a list kept here
            patch.delenv(name, raising=False)
        for name, value in BOTO_ENV.items():
            patch.setenv(name, value)
        variables = {**BASE_VARIABLES, "AWS_ENDPOINT_URL": aws_url, "COLLECT_LAG_SECONDS": "0",
                     "INITIAL_BACKFILL_MINUTES": "60"}
        bootstrap.override(from_env(variables))  # binds the models to the moto server
        tables.ensure_table()

        log = log_dir / "chalice-local.log"
        api, api_url = start_ours(
            lambda: start_chalice_local(free_port(), {**os.environ, **variables, **api_env}, log, project=project))
        yield KeyedApi(api_url, aws_url, log)
    finally:
        if api is not None:
            stop_process(api)
        stop_process(moto)
        patch.undo()
        bootstrap.reset()


def seed_usage(service: str, minutes: int = 30, egress_per_minute: int = 1000, ingress_per_minute: int = 10,
               requests_per_minute: int = 0, now: Optional[float] = None, consumer: str = "") -> int:
    """Collect ``minutes`` of steady traffic through the real collector (fed by the fake
    Prometheus), ending at the five-minute boundary before ``now`` so that whole 1m and 5m
    points are final; ``consumer``: whose traffic it is (Kong's label; empty: anonymous). Returns
    that end (epoch seconds)."""
    from chalicelib import bootstrap
    from tests.fakes.prometheus import FakePrometheus

    now = time.time() if now is None else now
    first = int(now // 300 * 300) - 60 * minutes
    prom = FakePrometheus()
    base = {"service": service, "consumer": consumer, "workspace": "default", "instance": "n1", "route": "r"}
    times = [first - 30 + 60 * i for i in range(minutes + 1)]
    prom.add({**base, "__name__": "kong_bandwidth_bytes", "direction": "egress"},
             [(t, egress_per_minute * i) for i, t in enumerate(times)])
    prom.add({**base, "__name__": "kong_bandwidth_bytes", "direction": "ingress"},
             [(t, ingress_per_minute * i) for i, t in enumerate(times)])
    if requests_per_minute:
        prom.add({**base, "__name__": "kong_http_requests_total", "code": "200", "source": "service"},
                 [(t, requests_per_minute * i) for i, t in enumerate(times)])
    settings = bootstrap.current().settings
    bootstrap.override(settings, prometheus=prom).collector.run(now=first + 60 * minutes)
    return first + 60 * minutes
