"""`chalice local` in a strict (non-dev) stage with an admin and a read key, on a moto server.

`chalice local --stage local` takes STAGE from .chalice/config.json (dev), so the strict stage
runs from a throwaway project directory: links to app.py and chalicelib/ and its own
.chalice/config.json. Everything is stopped and the environment restored afterwards."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
import requests

from localrun.processes import free_port, start_moto_server, start_server, stop_process
from tests.conftest import BASE_ENV
from tests.support.keyed_api import KeyedApi

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY, READ_KEY = "admin-key-for-hostile-tests", "read-key-for-hostile-tests"
ADMIN, READ = {"x-api-key": ADMIN_KEY}, {"x-api-key": READ_KEY}


def _project(where: Path, stage: str) -> Path:
    project = where / "project"
    (project / ".chalice").mkdir(parents=True)
    for name in ("app.py", "chalicelib"):
        (project / name).symlink_to(ROOT / name)
    (project / ".chalice" / "config.json").write_text(json.dumps({
        "version": "2.0", "app_name": "bandwidth-meter",
        "stages": {"local": {"environment_variables": {"STAGE": stage}}}}))
    return project


@contextlib.contextmanager
def strict_api(where: Path, stage: str = "prod", api_env: Dict[str, str] = None) -> Iterator[KeyedApi]:
    from chalicelib import bootstrap
    from chalicelib.core import tables

    moto, aws_url = start_moto_server()
    patch = pytest.MonkeyPatch()
    api = None
    try:
        for name in list(os.environ):
            if name.startswith(("AWS_", "API_KEYS", "THROTTLE_", "BWMETER_", "WEBHOOK_", "CORS_")):
                patch.delenv(name)
        for name, value in {**BASE_ENV, "AWS_ENDPOINT_URL": aws_url, "COLLECT_LAG_SECONDS": "0",
                            "INITIAL_BACKFILL_MINUTES": "60"}.items():
            patch.setenv(name, value)
        bootstrap.reset()
        bootstrap.current()
        tables.ensure_table()
        env = {**os.environ, "STAGE": stage, "API_KEYS": f"{ADMIN_KEY}:admin,{READ_KEY}:read",
               "THROTTLE_ENABLED": "false", "PYTHONUNBUFFERED": "1", **(api_env or {})}
        port, log = free_port(), where / "chalice-local.log"
        project = _project(where, stage)
        url = f"http://127.0.0.1:{port}"
        chalice = Path(sys.executable).with_name("chalice")
        api = start_server([str(chalice), "--project-dir", str(project), "local", "--stage", "local",
                            "--host", "127.0.0.1", "--port", str(port), "--no-autoreload"],
                           f"{url}/v1/health", "chalice local (strict stage)", env=env, log=log, cwd=project)
        yield KeyedApi(url, aws_url, log)
    finally:
        if api is not None:
            stop_process(api)
        stop_process(moto)
        patch.undo()
        bootstrap.reset()


def stored(api) -> dict:
    """Everything a refused request must leave unchanged: quotas, rules and the audit log, as the
    admin key reads them over HTTP."""
    def read(path):
        response = requests.get(f"{api.url}{path}", headers=ADMIN, timeout=20)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return {"quotas": read("/v1/quotas"), "rules": read("/v1/quota-rules"),
            "audit": read("/v1/quota-audit?limit=1000")}
