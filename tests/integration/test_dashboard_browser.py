"""The dashboard in headless Chromium (Debian's package, installed when absent) against the API
served by chalice local with known data: percentages, point counts, gaps; screenshots saved
under test-artifacts/."""
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.core.models import CollectorState
from tests.support.keyed_api import keyed_api

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True)
        path = shutil.which("chromium")
    if not path:
        pytest.skip("Debian's chromium is not installed and cannot be installed here (needs root and apt)")
    return path


def browse(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", *extra, url],
            capture_output=True, text=True, timeout=120)
    return result.stdout


def seed(minutes, egress_per_minute):
    """One collector run over `minutes` of steady egress per service, ending at the last five-minute
    boundary; returns that end."""
    from tests.fakes.prometheus import FakePrometheus

    end = int(time.time() // 300 * 300)
    prom = FakePrometheus()
    for service, rate in egress_per_minute.items():
        prom.add({"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": "egress",
                  "consumer": "", "workspace": "default", "instance": "n1"},
                 [(end - 60 * minutes - 30 + 60 * i, rate * i) for i in range(minutes + 1)])
    bootstrap.override(prometheus=prom).collector.run(now=end)
    return end


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("dashboard"), {}) as running:
        end = seed(minutes=40, egress_per_minute={"payments-api": 1000, "search-api": 10, "media-cdn": 500})
        for service, limit in (("payments-api", 50_000), ("search-api", 1_000)):
            requests.put(f"{running.url}/v1/services/{service}/quota", json={"limit_bytes": limit}, timeout=10)
        requests.put(f"{running.url}/v1/services/media-cdn/quota", json={"limit_bytes": 10_000, "action": "reject"},
                     timeout=10)
        # Ten minutes in the middle were never collected (an outage beyond the backfill limit).
        CollectorState("STATE", "collector").update(actions=[CollectorState.gaps.set([[end - 1500, end - 900]])])
        bootstrap.reset()
        ARTIFACTS.mkdir(exist_ok=True)
        yield running


def test_overview_lists_services_with_their_percentages(api):
    dom = browse(f"{api.url}/dashboard", "--dump-dom")
    browse(f"{api.url}/dashboard", f"--screenshot={ARTIFACTS / 'dashboard-overview.png'}", "--window-size=1280,800")
    browse(f"{api.url}/dashboard", f"--screenshot={ARTIFACTS / 'dashboard-overview-360.png'}", "--window-size=360,800")
    rows = re.findall(r'<tr><td><a href="#service=([^"&]+)[^>]*>[^<]*</a></td><td>([^<]*)</td><td>([^<]*)</td>'
                      r'<td>.*?<small>([^<]*)</small></td></tr>', dom)
    assert [(name, percent) for name, _, _, percent in rows] == [("payments-api", "80%"), ("search-api", "40%")]
    assert 'class="high"' not in dom and 'class="warn"' in dom  # 80 % is in the warning band


def test_the_chart_has_a_point_per_minute_and_the_gap_breaks_the_line(api):
    before = int(time.time())
    dom = browse(f"{api.url}/dashboard#service=payments-api&range=1h", "--dump-dom")
    after = int(time.time())
    browse(f"{api.url}/dashboard#service=payments-api&range=1h",
           f"--screenshot={ARTIFACTS / 'dashboard-service.png'}", "--window-size=1280,1000")
    paths = re.findall(r'<path d="([^"]*)" stroke="[^"]*" data-series="egress" data-points="(\d+)" '
                       r'data-segments="(\d+)"', dom)
    assert paths, dom[-2000:]
    _, points, segments = paths[0]
    expected = {len(range((t - 3600) // 60 * 60, t, 60)) for t in (before, after)}
    assert int(points) in expected
    assert int(segments) == 2  # collected, gap, collected
    assert 'class="quota-line"' in dom


def test_a_blocked_service_is_marked_in_the_overview_and_on_its_page(api):
    overview = browse(f"{api.url}/dashboard", "--dump-dom")
    assert re.search(r'>media-cdn</a> <span class="badge" title="answered 429 until [^"]+">blocked</span>', overview)
    assert overview.count('class="badge"') == 1
    page = browse(f"{api.url}/dashboard#service=media-cdn&range=1h", "--dump-dom")
    banner = re.search(r'<p id="blocked" role="status">([^<]*)</p>', page)
    assert banner and banner.group(1).startswith("Blocked at the gateway: requests are answered 429 until ")
    assert "not applied at the gateway yet" in banner.group(1)  # no Kong Admin API in this run
