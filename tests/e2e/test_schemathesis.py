"""Property-based checks of every endpoint against /openapi.json, through real HTTP
(`chalice local` on a moto server): no 5xx, and every answer as the spec says.
Runs the schemathesis CLI (its pytest plugin does not support this pytest yet).

Every check runs (see schemathesis.toml for the two settings) except one whose premise does
not hold here:
- positive_data_acceptance: some rules cannot be said in OpenAPI (start before end, at
  most 11,000 points, a real calendar date, a cursor this API issued), so schema-valid
  requests that break them rightly get 400."""
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.keyed_api import keyed_api, seed_usage

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
ADMIN_KEY = "schemathesis-admin-key"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("schemathesis"), {"API_KEYS": f"{ADMIN_KEY}:admin"}) as running:
        # Request counters too, so the links lead to stats as well as to charts (of both the service and acme).
        seed_usage("payments-api", minutes=20, consumer="acme", requests_per_minute=60)
        requests.put(f"{running.url}/v1/services/payments-api/quota", headers={"x-api-key": ADMIN_KEY},
                     json={"limit_bytes": 100000, "notify": ["ops@example.com"]}, timeout=10)
        stats = requests.get(f"{running.url}/v1/services/payments-api/stats", headers={"x-api-key": ADMIN_KEY}, timeout=10)
        assert stats.status_code == 200 and stats.json()["requests_count"]["success"] > 0, stats.text
        yield running


def test_every_endpoint_conforms_to_the_spec(api, tmp_path):
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
         f"{api.url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "25",
         "--header", f"x-api-key: {ADMIN_KEY}",
         "--request-timeout", "20", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"see test-artifacts/schemathesis.txt\n{result.stdout[-3000:]}"
    assert "No issues found" in result.stdout or "passed" in result.stdout
