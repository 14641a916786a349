"""`bwmeter` end to end: the real command (``python -m bwmeter``) against `chalice local` on a
moto server process, with API keys and tight limits (10 per minute per key, 2 per second)."""
import itertools
import json
import re
import subprocess
import sys
import time

import pytest

from chalicelib.core.timeutil import parse_time
from tests.support.keyed_api import ROOT, keyed_api, seed_usage


PER_MINUTE, PER_SECOND = 10, 2
READ_KEYS = [f"e2e-read-{i}-5f0c2a" for i in range(16)]
ADMIN_KEYS = [f"e2e-admin-{i}-b81d4e" for i in range(12)]
MINUTES = 30


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    keys = ",".join([f"{k}:read" for k in READ_KEYS] + [f"{k}:admin" for k in ADMIN_KEYS])
    env = {"API_KEYS": keys, "THROTTLE_PER_KEY_PER_MINUTE": str(PER_MINUTE), "THROTTLE_PER_SECOND": str(PER_SECOND)}
    with keyed_api(tmp_path_factory.mktemp("cli"), env) as server:
        last = seed_usage("pay", minutes=MINUTES, egress_per_minute=1000, ingress_per_minute=10,
                          requests_per_minute=60)
        _seed_alert("pay", last)
        server.collected_to = last
        yield server


def _seed_alert(service, at):
    from chalicelib.core.models import Alert

    start = at - at % 86400
    Alert.record(service, start, 80.0, period_end=start + 86400, status="sent", usage_bytes=8000, limit_bytes=10_000, recipients=["owner@example.com"],
          crossed_at=at - 300, sent_at=at - 299).save()


_fresh = {"read": iter(READ_KEYS), "admin": iter(ADMIN_KEYS)}


def fresh_key(role="read"):
    """A key no other test has spent from (each key has its own per-minute bucket)."""
    return next(_fresh[role])


def bwmeter(api, *args, key=None, url=None, timeout=60):
    env = {"PATH": "/usr/bin:/bin", "BWMETER_URL": url or api.url, "PYTHONIOENCODING": "utf-8"}
    if key:
        env["BWMETER_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "bwmeter", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_services_lists_the_seeded_service(api):
    result = bwmeter(api, "services", key=fresh_key())
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["SERVICE", "USED", "QUOTA"] and row.split()[0] == "pay"


def test_usage_shows_a_table_and_sparklines(api):
    result = bwmeter(api, "usage", "pay", "--range", "1h", "--step", "1m", key=fresh_key())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The hour from its first minute: 61 points, or 60 when the request lands on a whole minute.
    match = re.fullmatch(r"pay: (\S+) to (\S+), step 1m, (\d+) points", lines[0])
    assert match, lines[0]
    start, end, points = parse_time(match.group(1)), parse_time(match.group(2)), int(match.group(3))
    assert points == (end - start) // 60 and points in (60, 61)
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert set(rows) == {"ingress", "egress", "total"}
    assert rows["egress"].split()[1:3] == ["30", "KB"] and rows["ingress"].split()[1:3] == ["300", "B"]
    assert f"{MINUTES}/{points}" in rows["egress"] or f"{MINUTES + 1}/{points}" in rows["egress"]
    assert "█" in rows["egress"] and " █" in rows["egress"]  # blanks before the service was first seen


def test_usage_json_is_the_api_chart(api):
    result = bwmeter(api, "usage", "pay", "--range", "1h", "--step", "5m", "--direction", "egress", "--json",
                     key=fresh_key())
    chart = json.loads(result.stdout)
    assert result.returncode == 0 and chart["step"] == "5m"
    assert [s["total_bytes"] for s in chart["series"]] == [MINUTES * 1000]


def test_stats_shows_request_counts(api):
    result = bwmeter(api, "stats", "pay", key=fresh_key())
    assert result.returncode == 0, result.stderr
    assert f"{MINUTES * 60:,} ok" in result.stdout and "0 errors" in result.stdout


def test_stats_of_an_unknown_service_exits_4(api):
    result = bwmeter(api, "stats", "nope", key=fresh_key())
    assert result.returncode == 4 and "404 (not_found)" in result.stderr


def test_quota_set_get_rm_with_an_admin_key(api):
    admin, reader = fresh_key("admin"), fresh_key()
    result = bwmeter(api, "quota", "set", "pay", "--limit", "2GB", "--notify", "owner@example.com", key=admin)
    assert result.returncode == 0, result.stderr
    assert "2,000,000,000 (2 GB)" in result.stdout and "owner@example.com" in result.stdout
    got = json.loads(bwmeter(api, "quota", "get", "pay", "--json", key=reader).stdout)
    assert got["limit_bytes"] == 2 * 10**9 and got["notify"] == ["owner@example.com"]
    result = bwmeter(api, "quota", "set", "pay", "--thresholds", "50,100", key=admin)  # keeps the rest
    assert result.returncode == 0, result.stderr
    got = json.loads(bwmeter(api, "quota", "get", "pay", "--json", key=reader).stdout)
    assert got["thresholds"] == [50, 100] and got["limit_bytes"] == 2 * 10**9
    assert bwmeter(api, "quota", "rm", "pay", key=admin).returncode == 0
    gone = bwmeter(api, "quota", "get", "pay", key=reader)
    assert gone.returncode == 4 and "has no quota" in gone.stderr


def test_quota_set_with_a_read_key_exits_4_and_names_the_role(api):
    result = bwmeter(api, "quota", "set", "pay", "--limit", "1GB", "--replace", key=fresh_key())
    assert result.returncode == 4 and "403 (forbidden)" in result.stderr and "admin key" in result.stderr


def test_alerts_lists_sent_alerts(api):
    result = bwmeter(api, "alerts", "pay", key=fresh_key())
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1]
    assert "80 %" in row and "sent" in row and "owner@example.com" in row


def test_export_csv_to_stdout_and_to_a_file(api, tmp_path):
    key = fresh_key()
    result = bwmeter(api, "export", "pay", "--csv", "--range", "1h", "--step", "1m", key=key)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[0] == "time,service,direction,route,bytes,partial"
    egress = [line.split(",") for line in lines[1:] if ",egress," in line]
    # The hour from its first minute, one row a minute: 61, or 60 when the export lands on a whole minute.
    start, end = parse_time(egress[0][0]), parse_time(egress[-1][0]) + 60
    assert len(egress) == (end - start) // 60 and len(egress) in (60, 61)
    assert sum(int(row[4]) for row in egress if row[4]) == MINUTES * 1000
    target = tmp_path / "pay.csv"
    result = bwmeter(api, "export", "pay", "--csv", "--range", "1h", "-o", str(target), key=key)
    assert result.returncode == 0 and target.read_text().startswith("time,service,direction,route,bytes,partial\n")


def test_without_a_key_the_command_exits_4_and_says_what_to_set(api):
    result = bwmeter(api, "services")
    assert result.returncode == 4 and "401 (unauthorized)" in result.stderr and "BWMETER_API_KEY" in result.stderr


def test_an_unreachable_api_exits_3(api):
    from localrun.processes import free_port

    result = bwmeter(api, "services", key=fresh_key(), url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3 and "cannot connect" in result.stderr


def test_watch_pauses_on_429_and_resumes_without_exceeding_the_limit(api):
    time.sleep(1.0)  # a full overall bucket
    duration = 19
    result = bwmeter(api, "watch", "pay", "--json", "--duration", str(duration), key=fresh_key(),
                     timeout=duration + 30)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    sent = [e for e in events if e["event"] in ("usage", "throttled")]  # one per request
    throttled = [i for i, e in enumerate(events) if e["event"] == "throttled"]
    assert throttled and any(e["event"] == "resumed" for e in events)
    assert all(e["data"]["service"] == "pay" for e in events if e["event"] == "usage")
    for a, b in itertools.pairwise(sent):
        gap = b["t"] - a["t"]
        if a["event"] == "throttled":
            assert gap >= a["wait"] and b["event"] == "usage"  # silent for Retry-After, then let through
            assert 1 <= a["wait"] <= 60 / PER_MINUTE
        else:
            assert gap >= 0.95  # one request per second
    for i in throttled:  # the API's own answer: the key's limit, with Retry-After
        assert events[i]["error"]["status"] == 429 and "10 per minute" in events[i]["error"]["message"]
    elapsed = sent[-1]["t"]
    ok = sum(1 for e in sent if e["event"] == "usage")
    assert PER_MINUTE <= ok <= PER_MINUTE + elapsed * PER_MINUTE / 60 + 1


def test_health_needs_no_key_and_names_the_backends(api):
    result = bwmeter(api, "health")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: Bandwidth Meter ") and "  table " in result.stdout
    assert json.loads(bwmeter(api, "health", "--json").stdout)["status"] == "ok"


def test_status_says_how_far_the_collector_has_collected(api):
    from chalicelib.core.timeutil import iso

    key = fresh_key()
    result = bwmeter(api, "status", key=key)
    assert result.returncode == 0, result.stderr
    assert f"collected to  {iso(api.collected_to)}" in result.stdout and "last error    none" in result.stdout
    assert json.loads(bwmeter(api, "status", "--json", key=key).stdout)["watermark"] == iso(api.collected_to)


def test_quotas_lists_each_service_quota(api):
    admin = fresh_key("admin")
    assert bwmeter(api, "quota", "set", "listed-svc", "--limit", "3GB", "--period", "day", "--force",
                   key=admin).returncode == 0
    result = bwmeter(api, "quotas", key=fresh_key())
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("listed-svc "))
    assert row.split()[1:4] == ["3", "GB", "day"]
    listed = json.loads(bwmeter(api, "quotas", "--json", key=admin).stdout)["quotas"]
    assert {"service": "listed-svc", "limit_bytes": 3 * 10**9}.items() <= next(
        q for q in listed if q["service"] == "listed-svc").items()


def test_rules_set_from_a_file_then_get_round_trips(api, tmp_path):
    admin = fresh_key("admin")
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"pattern": "batch-*", "limit_bytes": 5000000, "period": "week"}]}))
    result = bwmeter(api, "rules", "set", str(path), key=admin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Saved 1 quota rule.") and "batch-*" in result.stdout
    got = bwmeter(api, "rules", "get", "--json", key=admin)
    assert json.loads(got.stdout)["rules"][0]["pattern"] == "batch-*"
    path.write_text(got.stdout)  # what `rules get --json` prints is what `rules set` takes
    assert bwmeter(api, "rules", "set", str(path), key=admin).returncode == 0


def test_rules_set_with_an_invalid_rule_exits_4_naming_the_field(api, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"pattern": "x"}]}))
    result = bwmeter(api, "rules", "set", str(path), key=fresh_key("admin"))
    assert result.returncode == 4 and "400 (bad_request)" in result.stderr and "limit_bytes" in result.stderr


def test_rules_set_with_a_file_that_is_not_json_exits_2(api, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text("rules: [pattern: x]")
    result = bwmeter(api, "rules", "set", str(path), key=fresh_key("admin"))
    assert result.returncode == 2 and "is not JSON" in result.stderr and "Traceback" not in result.stderr


def test_audit_shows_who_changed_a_quota(api):
    admin = fresh_key("admin")
    assert bwmeter(api, "quota", "set", "audited-svc", "--limit", "1GB", "--force", key=admin).returncode == 0
    result = bwmeter(api, "audit", "--limit", "50", key=admin)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if " quota/audited-svc " in line)
    assert "put" in row and "key#" in row and "set: 1 GB per month" in row
    entries = json.loads(bwmeter(api, "audit", "--json", key=admin).stdout)["entries"]
    assert any(e["key"] == "quota/audited-svc" and e["new"]["limit_bytes"] == 10**9 for e in entries)


def test_audit_with_a_read_key_exits_4(api):
    result = bwmeter(api, "audit", key=fresh_key())
    assert result.returncode == 4 and "403 (forbidden)" in result.stderr


def test_completion_prints_a_script_bash_can_source(api, tmp_path):
    result = bwmeter(api, "completion", "bash")
    assert result.returncode == 0
    script = tmp_path / "bwmeter.bash"
    script.write_text(result.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    wrong = bwmeter(api, "completion", "fish")
    assert wrong.returncode == 2 and "invalid choice: 'fish'" in wrong.stderr


def test_a_quota_for_a_name_never_seen_needs_force_and_alerts_names_the_closest(api):
    admin = fresh_key("admin")
    refused = bwmeter(api, "quota", "set", "pya", "--limit", "1GB", key=admin)
    assert refused.returncode == 2 and "pya has never been seen; did you mean pay?" in refused.stderr
    assert bwmeter(api, "quota", "get", "pya", key=admin).returncode == 4  # nothing stored
    forced = bwmeter(api, "quota", "set", "pya", "--limit", "1GB", "--force", key=admin)
    assert forced.returncode == 0 and "warning: service 'pya' has not been seen; did you mean 'pay'?" in forced.stderr
    alerts = bwmeter(api, "alerts", "pya", key=fresh_key())
    assert alerts.returncode == 4 and "did you mean pay?" in alerts.stderr and "No alerts" not in alerts.stdout
