"""`python -m localrun` (what `make run` starts) as a user runs it: it comes up on embedded
defaults, collects, turns a quota crossing into an email in ./outbox, and stops cleanly."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from localrun.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra):
    from tests.conftest import configuration_variables

    cleared = configuration_variables()  # every declared setting, not a list kept here
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not a running process
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("runtime") / "out.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "localrun"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env=clean_env(API_PORT=str(port), COLLECT_INTERVAL="2"), start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if "Press Ctrl+C to stop." in log.read_text():
            break
        assert process.poll() is None, log.read_text()
        time.sleep(0.5)
    else:
        pytest.fail("the runtime did not start:\n" + log.read_text())
    pids = [int(p) for p in (ROOT / ".run" / "pids").read_text().split()]
    yield process, api, log, pids
    # The runtime stops its servers on SIGTERM; they run in sessions of their own, so a
    # runtime killed outright would leave them behind: kill what is left of them too.
    stop_process(process, grace=30)
    for pid in pids:
        if pid != process.pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_it_serves_the_api_and_says_what_runs_where(runtime):
    _, api, log, _ = runtime
    health = requests.get(f"{api}/v1/health", timeout=5).json()
    assert health["status"] == "ok" and health["backends"]["prometheus"] is True
    text = log.read_text()
    for part in ("API ", "Prometheus ", "AWS ", "embedded moto server", "gateway ", "kong admin ",
                 f"export BWMETER_URL={api}   "):
        assert part in text


def test_the_banners_export_line_points_the_command_line_at_this_port(runtime):
    """The README's walkthrough, unchanged, on a port other than 8000: paste the banner's
    `export BWMETER_URL=...` line, then run bwmeter."""
    _, api, log, _ = runtime
    assert not api.endswith(":8000")
    line = re.search(r"export (BWMETER_URL=\S+)", log.read_text()).group(1)
    script = f"export {line}; {sys.executable} -m bwmeter health"
    env = {k: v for k, v in clean_env().items() if not k.startswith("BWMETER_")}
    result = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ok: Bandwidth Meter" in result.stdout and api in result.stdout, result.stderr
    without = subprocess.run([sys.executable, "-m", "bwmeter", "health", "--url", "http://127.0.0.1:9"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert without.returncode == 3 and "BWMETER_URL" in without.stderr


def test_the_collector_runs_on_schedule_and_demo_services_appear(runtime):
    _, api, _, _ = runtime
    deadline = time.monotonic() + 150
    services = []
    while time.monotonic() < deadline:
        status = requests.get(f"{api}/v1/collector/status", timeout=5).json()
        services = requests.get(f"{api}/v1/services", timeout=5).json()["services"]
        if status["last_success"] and services:
            break
        time.sleep(2)
    assert {s["service"] for s in services} <= {"payments-api", "search-api", "media-cdn"} and services
    assert status["last_error"] is None


def test_on_make_run_data_every_step_adds_up_to_the_one_minute_chart_and_the_overview(runtime):
    """Issue 28: the demo traffic, collected as `make run` collects it, charted at every step over
    the quota period, sums to the overview's period usage (and the 1-minute chart over what was
    collected); the bucket where collection began and the one still filling are partial, not null."""
    _, api, _, _ = runtime
    from chalicelib.core.timeutil import parse_time

    def total(path):
        body = requests.get(f"{api}{path}", timeout=30).json()
        return body, sum(p["bytes"] for s in body["series"] for p in s["points"] if p["bytes"] is not None)

    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        before = requests.get(f"{api}/v1/services", timeout=5).json()["services"]
        if not any(s["usage"]["total"] for s in before):
            time.sleep(2)
            continue
        start = parse_time(requests.get(f"{api}/v1/collector/status", timeout=5).json()["collection_start"])
        sums = {}
        for s in before:
            name, lo, hi = s["service"], parse_time(s["period"]["start"]), parse_time(s["period"]["end"])
            for step in ("5m", "15m", "1h", "1d"):
                body, sums[(name, step)] = total(f"/v1/services/{name}/bandwidth?start={lo}&end={hi}&step={step}")
                if step != "5m" and s["usage"]["total"]:
                    assert any(p["partial"] and p["bytes"] for x in body["series"] for p in x["points"]), (name, step)
            _, sums[(name, "1m")] = total(f"/v1/services/{name}/bandwidth?start={start}&end={int(time.time()) + 120}"
                                          "&step=1m")
        if requests.get(f"{api}/v1/services", timeout=5).json()["services"] == before:  # no run counted meanwhile
            for s in before:
                assert {step: sums[(s["service"], step)] for step in ("1m", "5m", "15m", "1h", "1d")} == dict.fromkeys(
                    ("1m", "5m", "15m", "1h", "1d"), s["usage"]["total"]), s["service"]
            return
    pytest.fail("no usage collected, or every reading raced a collector run")


def test_a_quota_crossing_reaches_the_stream_handler_and_lands_in_the_outbox(runtime):
    _, api, log, _ = runtime
    before = set((ROOT / "outbox").glob("*.eml")) if (ROOT / "outbox").exists() else set()
    service = requests.get(f"{api}/v1/services", timeout=5).json()["services"][0]["service"]
    response = requests.put(f"{api}/v1/services/{service}/quota",
                            json={"limit_bytes": 1, "thresholds": [100], "notify": ["owner@example.com"]}, timeout=5)
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = set((ROOT / "outbox").glob("*.eml")) - before
        if new:
            break
        time.sleep(1)
    assert new, log.read_text()[-2000:]
    import email
    from email import policy

    saved = email.message_from_bytes(next(iter(new)).read_bytes(), policy=policy.default)
    assert f"{service} reached 100%" in saved["Subject"] and saved.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in saved.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"} and "<" not in parts["text/plain"]
    assert f"{service} reached 100%" in parts["text/plain"] and "</" in parts["text/html"]
    assert "[email]" in log.read_text()


def test_a_reject_quota_blocks_the_service_at_the_development_gateway(runtime):
    _, api, log, _ = runtime
    gateway = re.search(r"gateway +(http://127\.0\.0\.1:\d+)/metrics", log.read_text()).group(1)
    service = requests.get(f"{api}/v1/services", timeout=5).json()["services"][-1]["service"]
    path = {"payments-api": "/pay/checkout", "search-api": "/search", "media-cdn": "/media"}[service]
    # A demo consumer's key: payments-api and search-api want one (key-auth answers 401 before
    # any block is looked at); media-cdn ignores it.
    key = {"apikey": "acme-mobile-demo-key"}
    response = requests.put(f"{api}/v1/services/{service}/quota", json={
        "limit_bytes": 1, "action": "reject", "thresholds": [100], "notify": ["owner@example.com"]}, timeout=5)
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = requests.get(f"{gateway}{path}", headers=key, timeout=5)
        if answer.status_code == 429:
            break
        time.sleep(1)
    assert answer.status_code == 429, log.read_text()[-2000:]
    assert f"{service} reached 100%" in answer.json()["message"]
    deadline = time.monotonic() + 15  # the run prints after it returns
    while time.monotonic() < deadline and f"{service} is blocked" not in log.read_text():
        time.sleep(0.5)
    assert f"[enforce] {service} blocked" in log.read_text()
    assert f"[Bandwidth Meter] {service} is blocked" in log.read_text()
    listing = requests.get(f"{api}/v1/enforcement", timeout=5).json()
    assert [b["service"] for b in listing["blocked"]] == [service] and listing["blocked"][0]["at_gateway"]


def test_a_busy_api_port_is_a_clear_error(runtime):
    _, api, _, _ = runtime
    port = api.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, "-m", "localrun"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(API_PORT=port), timeout=60)
    assert result.returncode != 0 and f"API_PORT {port} is already in use" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_stopping_leaves_no_process_behind(runtime, signum):
    process, _, log, pids = runtime
    children = [p for p in pids if p != process.pid]
    assert children and all(alive(p) for p in children)
    os.kill(process.pid, signum)
    process.wait(60)
    time.sleep(1)
    assert [p for p in children if alive(p)] == []
    assert "Stopped." in log.read_text()


def test_sigint_stops_a_fresh_runtime_cleanly():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localrun"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=clean_env(API_PORT=str(port)),
                               start_new_session=True)
    output = ""
    for line in process.stdout:
        output += line
        if "Press Ctrl+C" in line:
            break
    pids = [int(p) for p in (ROOT / ".run" / "pids").read_text().split() if int(p) != process.pid]
    process.send_signal(signal.SIGINT)
    output += process.communicate(timeout=60)[0]
    assert process.returncode == 0 and "Stopped." in output
    time.sleep(1)
    assert [p for p in pids if alive(p)] == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the API port is free again


def test_with_shards_make_run_collects_every_shard_in_parallel_workers():
    """SHARD_COUNT=2: the catch-all hands the demo services to shard 1, which then counts them."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localrun"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env=clean_env(API_PORT=str(port), COLLECT_INTERVAL="2", SHARD_COUNT="2"))
    try:
        for line in process.stdout:
            if "Press Ctrl+C" in line:
                break
        api, deadline, status = f"http://127.0.0.1:{port}", time.monotonic() + 150, {}
        while time.monotonic() < deadline:
            status = requests.get(f"{api}/v1/collector/status", timeout=5).json()
            shards = status.get("shards") or []
            if len(shards) == 2 and all(one["last_success"] for one in shards) and shards[1]["series_seen"]:
                break
            time.sleep(1)
        assert [one["shard"] for one in status["shards"]] == [0, 1], status
        assert status["shards"][1]["series_seen"] > 0 and status["last_error"] is None, status
        services = requests.get(f"{api}/v1/services", timeout=5).json()["services"]
        assert {s["service"] for s in services} <= {"payments-api", "search-api", "media-cdn"} and services
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 0
