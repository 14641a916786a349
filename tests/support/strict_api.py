"""`chalice local` in a strict (non-dev) stage with an admin and a read key, on a moto server.

`chalice local --stage local` takes STAGE from .chalice/config.json (dev), so the strict stage
runs from a throwaway project directory: links to app.py and chalicelib/ and its own
.chalice/config.json. Otherwise it is `keyed_api`: everything is stopped and the environment
restored afterwards."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Dict, Iterator

import requests

from tests.support.keyed_api import KeyedApi, keyed_api

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
    env = {"STAGE": stage, "API_KEYS": f"{ADMIN_KEY}:admin,{READ_KEY}:read", "THROTTLE_ENABLED": "false",
           **(api_env or {})}
    with keyed_api(where, env, project=_project(where, stage)) as api:
        yield api


def stored(api) -> dict:
    """Everything a refused request must leave unchanged: quotas, rules and the audit log, as the
    admin key reads them over HTTP."""
    def read(path):
        response = requests.get(f"{api.url}{path}", headers=ADMIN, timeout=20)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return {"quotas": read("/v1/quotas"), "rules": read("/v1/quota-rules"),
            "audit": read("/v1/quota-audit?limit=1000")}
