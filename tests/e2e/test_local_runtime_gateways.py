"""`make run GATEWAY=apisix` (the Makefile passes GATEWAY to `python -m localrun`): the
development gateway speaks APISIX's series, the collector reads them, and the demo services
appear with their consumers."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from localrun.processes import free_port, stop_process
from tests.e2e.test_local_runtime import ROOT, alive, clean_env


@pytest.fixture(scope="module")
def apisix_runtime(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("runtime") / "out.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "localrun"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env=clean_env(API_PORT=str(port), COLLECT_INTERVAL="2", GATEWAY="apisix"),
                                   start_new_session=True)
    deadline = time.monotonic() + 90
    while "Press Ctrl+C to stop." not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    pids = [int(p) for p in (ROOT / ".run" / "pids").read_text().split()]
    yield f"http://127.0.0.1:{port}", log
    stop_process(process, grace=30)
    for pid in pids:
        if pid != process.pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_gateway_apisix_runs_the_demo_in_apisixs_format_and_counts_its_consumers(apisix_runtime):
    api, log = apisix_runtime
    assert "apisix format" in log.read_text()
    gateway = next(line.split()[1] for line in log.read_text().splitlines() if line.strip().startswith("gateway "))
    metrics = requests.get(gateway, timeout=5).text
    assert "# TYPE apisix_bandwidth counter" in metrics and "kong_bandwidth" not in metrics
    deadline = time.monotonic() + 150
    consumers = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{api}/v1/collector/status", timeout=5).json()
        services = {s["service"] for s in requests.get(f"{api}/v1/services", timeout=5).json()["services"]}
        if status["last_success"] and "search-api" in services:
            total = requests.get(f"{api}/v1/services/search-api/bandwidth", params={"split": "consumer"},
                                 timeout=5).json()
            consumers = {s["consumer"] for s in total["series"] if s["total_bytes"]}
            if len(consumers) >= 2:
                break
        time.sleep(2)
    assert status["kong_schemas_seen"] == ["apisix"], status
    assert consumers and consumers <= {"acme-mobile", "globex-web", "initech-batch"}, consumers
