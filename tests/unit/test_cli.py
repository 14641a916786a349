"""bwmeter's client and commands against a tiny scripted HTTP server on loopback (no API, no
AWS), with the clock and sleep injected so waits take no time."""
import argparse
import io
import json
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from bwmeter.cli import human_bytes, main, parse_size, sparkline
from bwmeter.client import Client, Throttled, parse_retry_after

KEY = "cli-unit-key-93b1"


class FakeTime:
    """A monotonic clock that only sleep() moves."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class FakeApi:
    """Answers each request with ``respond(request) -> (status, body, headers)``; records requests."""

    def __init__(self):
        self.requests = []
        self.respond = lambda request: (404, {"error": {"code": "not_found", "message": "nothing here"}}, {})
        self.time = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                           "headers": dict(self.headers), "raw_path": self.path,
                           "body": json.loads(self.rfile.read(length)) if length else None,
                           "at": api.time.now if api.time else None}
                api.requests.append(request)
                status, body, headers = api.respond(request)
                data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if not isinstance(body, bytes):
                    self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = FakeApi()
    yield server
    server.close()


@pytest.fixture
def fake_time(api):
    api.time = FakeTime()
    return api.time


def run(api, *argv, fake_time=None, env=None, now=1_796_083_200.0):
    out, err = io.StringIO(), io.StringIO()
    env = {"BWMETER_URL": api.url, "BWMETER_API_KEY": KEY} if env is None else env
    t = fake_time or FakeTime()
    code = main(list(argv), env=env, stdout=out, stderr=err, sleep=t.sleep, clock=t.clock, now=lambda: now)
    return code, out.getvalue(), err.getvalue()


def summary(service="pay", used=1000, limit=None):
    quota = {"source": "service", "limit_bytes": limit, "period": "month", "direction": "total"} if limit else None
    return {"service": service, "usage": {"ingress": 0, "egress": used, "total": used},
            "period": {"kind": "month", "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
            "quota": quota, "percent": round(100 * used / limit, 2) if limit else None,
            "first_seen": "2026-11-30T00:00:00Z", "last_active": "2026-12-01T00:00:00Z"}


def chart(ingress, egress, step="1m"):
    def series(direction, values):
        return {"direction": direction, "route": None, "total_bytes": sum(v for v in values if v is not None),
                "points": [{"time": f"2026-12-01T00:{i:02d}:00Z", "bytes": v} for i, v in enumerate(values)]}

    return {"service": "pay", "start": "2026-12-01T00:00:00Z", "end": f"2026-12-01T00:{len(ingress):02d}:00Z",
            "step": step, "series": [series("ingress", ingress), series("egress", egress)]}


def seen(respond, services=("pay",)):
    """``respond``, with GET /v1/services/NAME answering 200 for the services seen (404 otherwise)
    and GET /v1/services listing them: what `quota set` and `alerts` ask before acting."""
    def answer(r):
        if r["method"] == "GET" and r["path"] == "/v1/services":
            return 200, {"services": [summary(name) for name in services], "next_cursor": None}, {}
        if r["method"] == "GET" and r["path"].count("/") == 3 and r["path"].startswith("/v1/services/"):
            name = r["path"].rsplit("/", 1)[1]
            return (200, summary(name), {}) if name in services else (
                404, {"error": {"code": "not_found", "message": f"unknown service {name!r}"}}, {})
        return respond(r)

    return answer


def quota_calls(api):
    return [r for r in api.requests if r["path"].endswith("/quota")]


# -- formatting -----------------------------------------------------------------------------
def test_sparkline_scales_from_zero_to_the_peak_and_leaves_missing_points_blank():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([None, 0, 7, None]) == " ▁█ "
    assert sparkline([0, 0]) == "▁▁" and sparkline([None, None]) == "  " and sparkline([]) == ""


def test_sparkline_sums_long_series_into_the_width():
    assert sparkline([1, 1, 0, 0, None, None, 2, 2], width=4) == "▅▁ █"


def test_sizes_parse_decimal_and_binary_units():
    assert parse_size("1000") == 1000
    assert parse_size("500GB") == 500 * 10**9 and parse_size("1.5 TiB") == int(1.5 * 2**40)
    assert parse_size("2m") == 2_000_000
    with pytest.raises(argparse.ArgumentTypeError, match="limit must be positive"):
        parse_size("-5MB")
    assert human_bytes(999) == "999 B" and human_bytes(1234567) == "1.23 MB" and human_bytes(None) == "-"


def test_retry_after_is_seconds_or_an_http_date():
    assert parse_retry_after("6") == 6.0
    assert parse_retry_after(formatdate(1030, usegmt=True), now=lambda: 1000.0) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- the client -----------------------------------------------------------------------------
def test_the_key_goes_in_the_header_and_service_names_are_quoted(api):
    api.respond = lambda r: (200, {"service": "a/b", "alerts": []}, {})
    Client(api.url, KEY).alerts("a/b")
    (request,) = api.requests
    assert request["headers"]["x-api-key"] == KEY and KEY not in request["raw_path"]
    assert request["raw_path"] == "/v1/services/a%2Fb/alerts"


def test_a_429_is_waited_out_for_retry_after_then_retried(api, fake_time):
    answers = iter([(429, {"error": {"code": "throttled", "message": "slow down"}}, {"Retry-After": "4"}),
                    (200, {"services": [], "total_count": 0, "next_cursor": None}, {})])
    api.respond = lambda r: next(answers)
    waits = []
    client = Client(api.url, KEY, sleep=fake_time.sleep, on_throttle=lambda wait, e: waits.append(wait))
    assert client.services() == []
    assert fake_time.sleeps == [4.0] and waits == [4.0] and [r["at"] for r in api.requests] == [0.0, 4.0]


def test_a_client_gives_up_after_its_retries(api, fake_time):
    api.respond = lambda r: (429, {"error": {"code": "throttled", "message": "slow down"}}, {"Retry-After": "1"})
    with pytest.raises(Throttled) as raised:
        Client(api.url, KEY, sleep=fake_time.sleep, retries=2).services()
    assert len(api.requests) == 3 and raised.value.exit_code == 4 and raised.value.retry_after == 1.0


def test_services_follows_every_page(api):
    pages = {None: {"services": [summary("a")], "next_cursor": "c1"},
             "c1": {"services": [summary("b")], "next_cursor": None}}
    api.respond = lambda r: (200, pages[r["query"].get("cursor", [None])[0]], {})
    assert [s["service"] for s in Client(api.url).services()] == ["a", "b"]


# -- commands and exit codes ----------------------------------------------------------------
def test_services_prints_a_table(api):
    api.respond = lambda r: (200, {"services": [summary("pay", 250, 1000), summary("media", 5)],
                                   "next_cursor": None}, {})
    code, out, _ = run(api, "services")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["SERVICE", "USED", "QUOTA", "USED", "%", "PERIOD", "LAST", "ACTIVE"]
    assert lines[1].split()[:6] == ["pay", "250", "B", "1", "KB", "25.0"]
    assert lines[2].split()[:4] == ["media", "5", "B", "-"]


def test_json_works_before_or_after_the_command(api):
    api.respond = lambda r: (200, {"services": [summary()], "next_cursor": None}, {})
    for argv in (["--json", "services"], ["services", "--json"]):
        code, out, _ = run(api, *argv)
        assert code == 0 and json.loads(out)["services"][0]["service"] == "pay"


def test_flags_override_the_environment(api):
    api.respond = lambda r: (200, {"services": [], "next_cursor": None}, {})
    code, _, _ = run(api, "services", "--url", api.url, "--api-key", "flag-key",
                     env={"BWMETER_URL": "http://127.0.0.1:9", "BWMETER_API_KEY": "env-key"})
    assert code == 0 and api.requests[0]["headers"]["x-api-key"] == "flag-key"


def test_usage_prints_a_table_with_a_sparkline_per_direction(api):
    api.respond = lambda r: (200, chart([0, 10, 20, None], [100, 200, 700, None]), {})
    code, out, _ = run(api, "usage", "pay", "--range", "1h", "--step", "1m")
    assert code == 0
    query = api.requests[0]["query"]
    assert query["step"] == ["1m"] and int(query["end"][0]) - int(query["start"][0]) == 3600
    rows = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert rows["ingress"].endswith("  ▁▅█") and rows["egress"].endswith("  ▂▃█")
    assert "1.03 KB" in rows["total"] and rows["total"].endswith("  ▂▃█")
    assert "3/4" in rows["total"] and "blank in the trend" in out


def test_usage_marks_partly_collected_points_and_counts_their_bytes(api):
    body = chart([5, 10, 3], [50, 100, 30], "1h")
    for s in body["series"]:
        s["points"][0]["partial"] = s["points"][2]["partial"] = True
        s["points"][1]["partial"] = False
    api.respond = lambda r: (200, body, {})
    code, out, _ = run(api, "usage", "pay", "--range", "3h", "--step", "1h")
    rows = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert code == 0 and "198 B" in rows["total"] and "3/3 (2 partial)" in rows["total"]
    assert ("(partial: 2026-12-01T00:00:00Z, 2026-12-01T00:02:00Z are only partly collected" in out
            and "blank in the trend" not in out)


def test_step_auto_leaves_the_choice_to_the_api(api):
    api.respond = lambda r: (200, chart([1], [1], "5m"), {})
    run(api, "usage", "pay")
    assert "step" not in api.requests[0]["query"]


def test_stats_prints_counts_and_latency(api):
    api.respond = lambda r: (200, {"service": "pay", "start": "s", "end": "e", "collected_until": "c",
                                   "requests_count": {"success": 1200, "error": 3},
                                   "latency_ms": {"average": 12.5, "p95": 40.0, "p99": None},
                                   "by_status": {"200": 1200, "503": 3}}, {})
    code, out, _ = run(api, "stats", "pay")
    assert code == 0 and "1,200 ok" in out and "3 errors" in out and "p95 40 ms" in out and "503: 3" in out


def test_stats_explains_an_api_without_the_endpoint(api):
    api.respond = lambda r: (403, {"message": "Missing Authentication Token"}, {})
    code, _, err = run(api, "stats", "pay")
    assert code == 4 and "this API has no stats endpoint" in err


def test_stats_of_an_unknown_service_says_so(api):
    api.respond = lambda r: (404, {"error": {"code": "not_found", "message": "no service 'nope'"}}, {})
    code, _, err = run(api, "stats", "nope")
    assert code == 4 and "404 (not_found): no service 'nope'" in err


def test_quota_set_changes_only_the_options_given(api):
    stored = {"limit_bytes": 100, "period": "month", "notify": ["a@example.com"], "thresholds": [80, 90, 100]}
    api.respond = seen(lambda r: (200, stored if r["method"] == "GET" else r["body"], {}))
    code, out, _ = run(api, "quota", "set", "pay", "--limit", "2GB", "--thresholds", "50,100")
    put = quota_calls(api)[1]
    assert code == 0 and put["method"] == "PUT" and put["path"] == "/v1/services/pay/quota"
    assert put["body"] == {**stored, "limit_bytes": 2 * 10**9, "thresholds": [50, 100]}
    assert "2,000,000,000 (2 GB)" in out


def test_quota_set_changes_the_version_it_read_and_reports_a_concurrent_change(api):
    stored = {"limit_bytes": 100, "period": "month"}
    conflict = {"error": {"code": "precondition_failed", "current_version": '"8"',
                          "message": "the quota of 'pay' changed since it was read: its current version is \"8\""}}
    api.respond = seen(lambda r: (200, stored, {"ETag": '"7"'}) if r["method"] == "GET" else (412, conflict, {}))
    code, _, err = run(api, "quota", "set", "pay", "--limit", "2GB")
    assert quota_calls(api)[1]["headers"]["If-Match"] == '"7"'
    assert code != 0 and "412" in err and "changed since it was read" in err


def test_quota_set_replace_sends_only_the_options_given(api):
    api.respond = seen(lambda r: (200, r["body"], {}))
    code, _, _ = run(api, "quota", "set", "pay", "--limit", "1000", "--replace", "--notify", "x@example.com")
    assert code == 0 and [r["method"] for r in quota_calls(api)] == ["PUT"]
    assert quota_calls(api)[0]["body"] == {"limit_bytes": 1000, "notify": ["x@example.com"]}


def test_quota_set_for_a_service_never_seen_names_the_closest_and_needs_force(api):
    def quota(r):
        if r["method"] == "PUT":
            return 200, {**r["body"], "warnings": ["service 'media-cnd' has not been seen; did you mean 'media-cdn'?"]}, {}
        return 404, {"error": {"code": "not_found", "message": "no quota"}}, {}

    api.respond = seen(quota, services=("media-cdn", "pay"))
    code, out, err = run(api, "quota", "set", "media-cnd", "--limit", "1GB")
    assert code == 2 and "media-cnd has never been seen; did you mean media-cdn?" in err and "--force" in err
    assert quota_calls(api) == []  # nothing stored
    code, out, err = run(api, "quota", "set", "media-cnd", "--limit", "1GB", "--force")
    assert code == 0 and [r["method"] for r in quota_calls(api)] == ["GET", "PUT"]
    assert "warning: service 'media-cnd' has not been seen; did you mean 'media-cdn'?" in err
    assert "warnings" not in out and "1,000,000,000 (1 GB)" in out


def test_alerts_for_a_service_never_seen_says_so_with_the_closest_names(api):
    api.respond = seen(lambda r: (200, {"service": "serch-api", "alerts": []}, {}),
                       services=("search-api", "media-cdn"))
    code, out, err = run(api, "alerts", "serch-api")
    assert code == 4 and "No alerts" not in out
    assert "serch-api has never been seen; did you mean search-api?, so it has no alerts." not in err
    assert "serch-api has never been seen; did you mean search-api? So it has no alerts." in err
    code, out, _ = run(api, "alerts", "media-cdn")
    assert code == 0 and "No alerts for media-cdn." in out


def test_quota_rm(api):
    api.respond = lambda r: (204, None, {})
    code, out, _ = run(api, "quota", "rm", "pay")
    assert code == 0 and api.requests[0]["method"] == "DELETE" and "Removed the quota of pay" in out


def test_a_forbidden_request_exits_4_and_hints_at_the_admin_key(api):
    api.respond = lambda r: (403, {"error": {"code": "forbidden", "message": "needs the admin role"}}, {})
    code, _, err = run(api, "quota", "rm", "pay")
    assert code == 4 and "403" in err and "admin key" in err


def test_a_missing_key_exits_4_and_says_how_to_give_one(api):
    api.respond = lambda r: (401, {"error": {"code": "unauthorized", "message": "an API key is required"}}, {})
    code, _, err = run(api, "alerts", "pay", env={"BWMETER_URL": api.url})
    assert code == 4 and "BWMETER_API_KEY" in err and "x-api-key" not in api.requests[0]["headers"]


def test_a_server_error_exits_5(api):
    api.respond = lambda r: (503, {"error": {"code": "backend_unavailable", "message": "try again"}}, {})
    code, _, err = run(api, "alerts", "pay")
    assert code == 5 and "503" in err


def test_errors_are_json_on_stderr_with_json(api):
    api.respond = lambda r: (503, {"error": {"code": "backend_unavailable", "message": "try again"}}, {})
    code, out, err = run(api, "alerts", "pay", "--json")
    assert code == 5 and out == "" and json.loads(err)["error"]["code"] == "backend_unavailable"


def test_an_unreachable_api_exits_3():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request
    out, err = io.StringIO(), io.StringIO()
    code = main(["services"], env={"BWMETER_URL": f"http://127.0.0.1:{port}"}, stdout=out, stderr=err)
    assert code == 3 and "cannot connect" in err.getvalue()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again before the request


@pytest.mark.parametrize("how", ["default", "env", "flag"])
def test_a_connection_error_names_the_url_tried_and_how_to_change_it(how, monkeypatch):
    port = _closed_port()
    url = f"http://127.0.0.1:{port}"
    if how == "default":  # as when `API_PORT=8123 make run` runs and BWMETER_URL is not set
        monkeypatch.setattr("bwmeter.cli.DEFAULT_URL", url)
    argv = ["services"] + (["--url", url] if how == "flag" else [])
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, env={"BWMETER_URL": url} if how == "env" else {}, stdout=out, stderr=err)
    text = err.getvalue()
    assert code == 3 and f"cannot connect to {url}" in text
    assert {"default": f"bwmeter called the default {url}, as BWMETER_URL is not set",
            "env": f"bwmeter called {url} (from BWMETER_URL)", "flag": f"bwmeter called {url} (from --url)"}[how] in text
    assert "BWMETER_URL=http://HOST:PORT or --url" in text and "export BWMETER_URL=" in text


def test_an_answer_that_is_not_json_exits_1(api):
    api.respond = lambda r: (200, b"<html>hello</html>", {"Content-Type": "text/html"})
    code, _, err = run(api, "alerts", "pay")
    assert code == 1 and "not JSON" in err


def test_a_usage_error_exits_2(api):
    assert run(api, "usage")[0] == 2
    assert run(api, "quota", "set", "pay", "--limit", "lots")[0] == 2


def test_alerts_table(api):
    alert = {"crossed_at": "2026-12-01T10:00:00Z", "threshold": 80.0, "status": "sent", "usage_bytes": 800,
             "limit_bytes": 1000, "sent_at": "2026-12-01T10:00:05Z", "recipients": ["a@example.com"]}
    api.respond = lambda r: (200, {"service": "pay", "alerts": [alert]}, {})
    code, out, _ = run(api, "alerts", "pay")
    assert code == 0 and out.splitlines()[1].split() == [
        "2026-12-01T10:00:00Z", "80", "%", "sent", "800", "B", "1", "KB", "2026-12-01T10:00:05Z", "a@example.com"]


def test_export_writes_the_api_csv(api, tmp_path):
    csv = b"time,service,direction,route,bytes\n2026-12-01T00:00:00Z,pay,ingress,,5\n"
    api.respond = lambda r: (200, csv, {"Content-Type": "text/csv"})
    code, out, _ = run(api, "export", "pay", "--csv")
    assert code == 0 and out == csv.decode() and api.requests[0]["query"]["format"] == ["csv"]
    code, out, err = run(api, "export", "pay", "--csv", "-o", str(tmp_path / "pay.csv"))
    assert code == 0 and out == "" and (tmp_path / "pay.csv").read_bytes() == csv


# -- watch ----------------------------------------------------------------------------------
def test_watch_pauses_for_retry_after_and_resumes_by_itself(api, fake_time):
    used = iter(range(1000, 100_000, 100))

    def respond(request):
        if 3 <= len(api.requests) <= 3:  # the third request is refused
            return 429, {"error": {"code": "throttled", "message": "this key's limit is 10 per minute"}}, \
                {"Retry-After": "5"}
        return 200, summary(used=next(used), limit=10_000), {}

    api.respond = respond
    code, out, err = run(api, "watch", "pay", "--max-requests", "6", fake_time=fake_time)
    assert code == 0
    assert [r["at"] for r in api.requests] == [0.0, 1.0, 2.0, 7.0, 8.0, 9.0]  # nothing sent while paused
    assert "Not sending for 5 s (Retry-After), then resuming." in err and "resumed." in err
    assert "6 requests, 1 throttled, paused 5 s in all." in err
    lines = out.splitlines()
    assert len(lines) == 5 and "1 KB this month of 10 KB, 10.0 %" in lines[0] and lines[1].endswith("(+100 B)")


def test_watch_backs_off_without_retry_after(api, fake_time):
    api.respond = lambda r: (429, {"error": {"code": "throttled", "message": "slow down"}}, {})
    code, _, _ = run(api, "watch", "pay", "--max-requests", "3", fake_time=fake_time)
    assert code == 0 and [r["at"] for r in api.requests] == [0.0, 2.0, 6.0]


def test_watch_json_is_one_event_per_line(api, fake_time):
    answers = iter([(200, summary(), {}), (429, {"error": {"code": "throttled", "message": "x"}}, {"Retry-After": "3"}),
                    (200, summary(), {})])
    api.respond = lambda r: next(answers)
    code, out, _ = run(api, "watch", "pay", "--json", "--max-requests", "3", fake_time=fake_time)
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(e["event"], e["t"]) for e in events] == [
        ("usage", 0.0), ("throttled", 1.0), ("resumed", 4.0), ("usage", 4.0)]
    assert events[1]["wait"] == 3.0 and events[1]["error"]["retry_after"] == 3.0


def test_watch_stops_at_its_duration_even_while_paused(api, fake_time):
    api.respond = lambda r: (429, {"error": {"code": "throttled", "message": "x"}}, {"Retry-After": "60"})
    code, _, err = run(api, "watch", "pay", "--duration", "10", fake_time=fake_time)
    assert code == 0 and len(api.requests) == 1 and fake_time.now == 10.0


def test_watch_ends_on_a_refusal_that_waiting_cannot_fix(api, fake_time):
    api.respond = lambda r: (401, {"error": {"code": "unauthorized", "message": "the API key is not valid"}}, {})
    code, _, err = run(api, "watch", "pay", "--max-requests", "5", fake_time=fake_time)
    assert code == 4 and len(api.requests) == 1 and "not valid" in err


def test_watch_rides_out_server_errors(api, fake_time):
    answers = iter([(503, {"error": {"code": "backend_unavailable", "message": "later"}}, {}), (200, summary(), {})])
    api.respond = lambda r: next(answers)
    code, out, err = run(api, "watch", "pay", "--max-requests", "2", fake_time=fake_time)
    assert code == 0 and "503" in err and "trying again" in err and "pay" in out


# -- health, status, quotas, rules, audit, completion ----------------------------------------
STATUS = {"watermark": "2026-12-01T00:00:00Z", "lag_seconds": 75, "configured_lag_seconds": 60,
          "collection_start": "2026-11-30T00:00:00Z", "gaps": [], "running": False, "running_since": None,
          "last_run_start": "2026-12-01T00:01:00Z", "last_run_end": "2026-12-01T00:01:01Z", "last_duration_ms": 812,
          "series_seen": 40, "minutes_written": 1, "items_written": 3, "kong_schemas_seen": ["3.7"],
          "last_success": "2026-12-01T00:01:01Z", "last_error": "Prometheus answered 503",
          "last_error_at": "2026-11-30T23:00:00Z"}
RULE = {"pattern": "pay*", "limit_bytes": 10**9, "period": "month", "anchor_day": 1, "direction": "total",
        "thresholds": [80, 90, 100], "notify": ["ops@example.com"]}


def test_health_prints_the_version_and_backends(api):
    api.respond = lambda r: (200, {"status": "ok", "version": "0.1.0", "backends": {"table": "bw", "stage": "dev"}}, {})
    code, out, _ = run(api, "health")
    assert code == 0 and out.splitlines() == [f"ok: Bandwidth Meter 0.1.0 at {api.url}", "  stage  dev", "  table  bw"]
    assert api.requests[0]["path"] == "/v1/health"


def test_status_shows_lag_last_run_and_last_error(api):
    api.respond = lambda r: (200, STATUS, {})
    code, out, _ = run(api, "status")
    assert code == 0 and out.splitlines()[0] == "Collector: idle"
    assert "collected to  2026-12-01T00:00:00Z (lag 75 s; a minute is final 60 s after it ends)" in out
    assert "last error    Prometheus answered 503 (at 2026-11-30T23:00:00Z)" in out
    assert "812 ms" in out and "gaps          none" in out


def test_status_json_is_the_api_answer(api):
    api.respond = lambda r: (200, STATUS, {})
    code, out, _ = run(api, "status", "--json")
    assert code == 0 and json.loads(out) == STATUS


def test_quotas_lists_service_quotas_then_rules(api):
    own = {**RULE, "service": "search"}
    del own["pattern"]
    api.respond = lambda r: (200, {"quotas": [own], "rules": [RULE]}, {})
    code, out, _ = run(api, "quotas")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["SERVICE", "LIMIT", "PERIOD", "DIRECTION", "ACTION", "THRESHOLDS",
                                              "NOTIFY"]
    assert lines[1].split() == ["search", "1", "GB", "month", "total", "warn", "80,90,100", "ops@example.com"]
    assert lines[-1].split()[:3] == ["pay*", "1", "GB"]


def test_quotas_show_the_action_and_the_reject_level(api):
    own = {"service": "media", "limit_bytes": 10**6, "period": "day", "direction": "total", "thresholds": [100],
           "notify": [], "action": "reject", "reject_at": 90}
    api.respond = lambda r: (200, {"quotas": [own], "rules": [{**RULE, "action": "warn"}]}, {})
    lines = run(api, "quotas")[1].splitlines()
    assert lines[1].split()[:7] == ["media", "1", "MB", "day", "total", "reject", "at"] and "90%" in lines[1]
    assert lines[-1].split()[5] == "warn"


def test_quota_get_hides_anchor_day_for_a_daily_quota_and_shows_it_for_a_monthly(api):
    daily = {"limit_bytes": 10**6, "period": "day", "anchor_day": 1, "direction": "total", "action": "warn"}
    api.respond = lambda r: (200, daily, {})
    out = run(api, "quota", "get", "pay")[1]
    assert "anchor_day" not in out and "period       day" in out
    api.respond = lambda r: (200, {**daily, "period": "month", "anchor_day": 15}, {})
    assert "anchor_day   15" in run(api, "quota", "get", "pay")[1]


@pytest.mark.parametrize("argv", [["quota", "set", "pay", "--limit", "-5MB"], ["quota", "set", "pay", "--limit=-5MB"]])
def test_a_negative_limit_is_a_clear_error_not_expected_one_argument(api, argv, capsys):
    code, _, _ = run(api, *argv)
    err = capsys.readouterr().err  # argparse's own message
    assert code == 2 and "limit must be positive" in err and "expected one argument" not in err
    assert api.requests == []


def test_negative_values_of_other_options_reach_their_check_too(api, capsys):
    code, _, _ = run(api, "audit", "--limit", "-3")
    err = capsys.readouterr().err
    assert code == 2 and "must be more than 0" in err and "expected one argument" not in err


@pytest.mark.parametrize("argv, missing", [(["quota"], "get, set or rm and a SERVICE"), (["quota", "get"], "a SERVICE")])
def test_quota_without_arguments_prints_its_help_and_what_is_missing(api, argv, missing):
    code, _, err = run(api, *argv)
    assert code == 2 and f"quota needs {missing}" in err and "required: action" not in err
    assert "usage: bwmeter quota [-h]" in err and "get|set|rm" in err and "--action {warn,reject}" in err
    assert api.requests == []


def test_rules_set_puts_the_file_and_a_bare_list_is_wrapped(api, tmp_path):
    api.respond = lambda r: (200, r["body"], {})
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([RULE]))
    code, out, _ = run(api, "rules", "set", str(path))
    assert code == 0 and out.startswith("Saved 1 quota rule.")
    (request,) = api.requests
    assert request["method"] == "PUT" and request["path"] == "/v1/quota-rules" and request["body"] == {"rules": [RULE]}


def test_rules_get_json_round_trips_into_rules_set(api, tmp_path):
    api.respond = lambda r: (200, {"rules": [RULE]} if r["method"] == "GET" else r["body"], {})
    code, out, _ = run(api, "rules", "get", "--json")
    path = tmp_path / "rules.json"
    path.write_text(out)
    assert code == 0 and run(api, "rules", "set", str(path))[0] == 0
    assert api.requests[-1]["body"] == {"rules": [RULE]}


def test_rules_set_reads_standard_input(api):
    api.respond = lambda r: (200, r["body"], {})
    out, err = io.StringIO(), io.StringIO()
    code = main(["rules", "set", "-"], env={"BWMETER_URL": api.url, "BWMETER_API_KEY": KEY}, stdout=out,
                stderr=err, stdin=io.StringIO(json.dumps({"rules": [RULE]})))
    assert code == 0 and api.requests[0]["body"] == {"rules": [RULE]}


@pytest.mark.parametrize("content, message", [
    ("{rules: nope", "is not JSON"),
    ('{"pattern": "x"}', 'must hold {"rules": [...]}'),
    ('"rules"', 'must hold {"rules": [...]}'),
])
def test_rules_set_refuses_a_file_that_is_not_rules_before_sending_anything(api, tmp_path, content, message):
    path = tmp_path / "rules.json"
    path.write_text(content)
    code, _, err = run(api, "rules", "set", str(path))
    assert code == 2 and message in err and api.requests == []


@pytest.mark.parametrize("argv, message", [
    (["rules", "set"], "rules set needs a FILE"),
    (["rules", "set", "/no/such/rules.json"], "cannot read /no/such/rules.json"),
    (["rules", "get", "extra.json"], "rules get takes no file"),
])
def test_rules_usage_mistakes_exit_2_with_a_message(api, argv, message):
    code, _, err = run(api, *argv)
    assert code == 2 and message in err and api.requests == []


def test_audit_summarises_each_change(api):
    entries = [
        {"at": "2026-12-01T00:02:00Z", "key": "quota-rules", "action": "put", "old": None, "new": [RULE],
         "actor": "key#1a2b3c4d"},
        {"at": "2026-12-01T00:01:00Z", "key": "quota/pay", "action": "put", "old": {"limit_bytes": 1, "period": "day"},
         "new": {"limit_bytes": 2, "period": "day"}, "actor": "key#1a2b3c4d"},
        {"at": "2026-12-01T00:00:00Z", "key": "quota/pay", "action": "delete", "old": {"limit_bytes": 5000}, "new": None,
         "actor": None},
    ]
    api.respond = lambda r: (200, {"entries": entries}, {})
    code, out, _ = run(api, "audit", "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and api.requests[0]["query"] == {"limit": ["3"]}
    assert lines[1].endswith("none -> 1 rule") and lines[2].endswith("changed: limit_bytes 1 B -> 2 B")
    assert lines[3].endswith("removed (was 5 KB)") and "key#1a2b3c4d" in lines[1]


def test_audit_shows_each_changed_field_old_to_new(api):
    entry = {"at": "2026-12-01T00:01:00Z", "key": "quota/pay", "action": "put", "actor": "key#1a2b3c4d",
             "old": {"limit_bytes": 10**9, "period": "month", "thresholds": [80, 90], "notify": ["a@x.io"]},
             "new": {"limit_bytes": 2 * 10**9, "period": "day", "thresholds": [80, 90], "notify": ["a@x.io"],
                     "action": "reject"}}
    api.respond = lambda r: (200, {"entries": [entry]}, {})
    out = run(api, "audit")[1]
    assert out.splitlines()[1].endswith("changed: action - -> reject, limit_bytes 1 GB -> 2 GB, period month -> day")


def test_audit_limit_must_be_positive(api):
    assert run(api, "audit", "--limit", "0")[0] == 2 and api.requests == []


def complete(script: str, *words: str) -> list:
    """What bash offers after sourcing ``script`` for the command line ``words`` (the last word is
    the one being completed)."""
    import shutil
    import subprocess

    if not shutil.which("bash"):
        pytest.skip("bash is not installed")
    line = " ".join(words)
    driver = (f"{script}\nCOMP_WORDS=(bwmeter {' '.join(repr(w) for w in words)})\nCOMP_CWORD={len(words)}\n"
              f"COMP_LINE={('bwmeter ' + line)!r}\nCOMP_POINT=${{#COMP_LINE}}\n"
              "_shtab_bwmeter bwmeter\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "--norc", "--noprofile"], input=driver, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return sorted(filter(None, result.stdout.splitlines()))


@pytest.fixture(scope="module")
def bash_script():
    out = io.StringIO()
    assert main(["completion", "bash"], env={}, stdout=out, stderr=io.StringIO()) == 0
    return out.getvalue()


def test_bash_completion_offers_commands(bash_script):
    assert complete(bash_script, "qu") == ["quota", "quotas"]
    assert {"status", "health", "rules", "audit", "completion"} <= set(complete(bash_script, ""))


def test_bash_completion_offers_each_commands_choices(bash_script):
    assert complete(bash_script, "rules", "") == ["get", "set"]
    assert complete(bash_script, "completion", "") == ["bash", "zsh"]
    assert complete(bash_script, "quota", "set", "pay", "--period", "") == ["day", "month", "week"]


def test_bash_completion_offers_every_commands_json_flag(bash_script):
    for command in ("services", "status", "health", "quotas", "rules", "audit"):
        assert "--json" in complete(bash_script, command, "--j"), command


def test_zsh_completion_is_a_compdef_script_naming_every_command(api):
    code, out, _ = run(api, "completion", "zsh")
    assert code == 0 and out.startswith("#compdef bwmeter")
    for command in ("services", "usage", "stats", "quota", "quotas", "alerts", "export", "watch", "health",
                    "status", "rules", "audit", "completion"):
        assert f"\n    {command}:'" in out, command


def test_quota_set_reject_sends_the_action_and_level(api):
    api.respond = seen(lambda r: (200, r["body"], {}))
    code, _, _ = run(api, "quota", "set", "pay", "--limit", "1000", "--replace", "--action", "reject",
                     "--reject-at", "90")
    assert code == 0 and quota_calls(api)[0]["body"] == {"limit_bytes": 1000, "action": "reject", "reject_at": 90.0}


def test_quota_set_action_warn_drops_the_reject_level(api):
    stored = {"limit_bytes": 100, "action": "reject", "reject_at": 90}
    api.respond = seen(lambda r: (200, stored if r["method"] == "GET" else r["body"], {}))
    code, _, _ = run(api, "quota", "set", "pay", "--action", "warn")
    assert code == 0 and quota_calls(api)[1]["body"] == {"limit_bytes": 100, "action": "warn"}


ENFORCEMENT = {"mode": "admin-api", "blocked": [
    {"service": "pay", "usage_bytes": 2_000_000, "limit_bytes": 1_000_000, "percent": 200.0, "reject_at": 100,
     "period_end": "2026-12-01T00:00:00Z", "at_gateway": True, "plugin_id": "p1"}],
    "gateway": {"enabled": True, "last_reconcile": "2026-11-25T10:00:00Z", "blocked_count": 1,
                "missing_services": ["ghost"], "last_error": None},
    "deck": {"_format_version": "3.0", "plugins": [{"name": "request-termination", "service": "pay"}]}}


def test_enforcement_lists_blocked_services(api):
    api.respond = lambda r: (200, ENFORCEMENT, {})
    code, out, _ = run(api, "enforcement")
    assert code == 0 and api.requests[0]["path"] == "/v1/enforcement"
    row = next(line for line in out.splitlines() if line.startswith("pay"))
    assert "2 MB" in row and "200.0 %" in row and "2026-12-01T00:00:00Z" in row and row.endswith("blocked")
    assert "missing services: ghost" in out and "1 blocked there" in out


def test_enforcement_right_after_a_lift_says_lift_pending_not_nothing_blocked(api):
    """Issue 28: 'No service is blocked' next to '1 blocked at Kong' while the gateway still 429s."""
    api.respond = lambda r: (200, {**ENFORCEMENT, "blocked": [], "lift_pending": [
        {"service": "pay", "plugin_id": "p1", "period_end": "2026-12-01T00:00:00Z", "at_gateway": True,
         "state": "lift pending"}]}, {})
    code, out, _ = run(api, "enforcement")
    row = next(line for line in out.splitlines() if line.startswith("pay"))
    assert code == 0 and row.endswith("lift pending (next run)") and "No service is blocked" not in out
    assert "the gateway answers 429 until the collector's next run lifts the block" in out


def test_enforcement_of_a_block_not_applied_yet_says_block_pending(api):
    pending = {**ENFORCEMENT["blocked"][0], "at_gateway": False, "plugin_id": None, "state": "block pending"}
    api.respond = lambda r: (200, {**ENFORCEMENT, "blocked": [pending], "lift_pending": []}, {})
    code, out, _ = run(api, "enforcement")
    row = next(line for line in out.splitlines() if line.startswith("pay"))
    assert code == 0 and row.endswith("block pending (next run)") and "within a minute" in out


def test_enforcement_json_and_deck(api):
    api.respond = lambda r: (200, ENFORCEMENT, {})
    assert json.loads(run(api, "enforcement", "--json")[1]) == ENFORCEMENT
    assert json.loads(run(api, "enforcement", "--deck")[1]) == ENFORCEMENT["deck"]


def test_import_makes_a_batch_and_a_commit_the_api_failed_again_and_stops_at_a_refusal(api, fake_time, tmp_path):
    """A 503 (DynamoDB throttled) or no answer is transient: the batch is sent again (it replaces
    itself) and the commit made again (it resumes), after 1 s, then 2 s. A 4xx is not retried."""
    path = tmp_path / "usage.csv"
    path.write_text("id,time,service,direction,bytes\n1,2026-12-01T10:00:00Z,cdn,egress,42\n")
    unavailable = (503, {"error": {"code": "backend_unavailable", "message": "a backend is unavailable"}}, {})
    answers = {("POST", "/v1/imports"): [(201, {"id": "imp1", "status": "open"}, {})],
               ("PUT", "/v1/imports/imp1/batches/0"): [unavailable, (200, {"staged": 1, "results": [
                   {"index": 0, "id": "1", "source": "s", "status": "staged"}]}, {})],
               ("POST", "/v1/imports/imp1/commit"): [unavailable, unavailable, (200, {
                   "status": "committed", "batches": 1, "batches_applied": 1,
                   "result": {"accepted": 1, "duplicate": 0}}, {})]}
    api.respond = lambda request: answers[(request["method"], request["path"])].pop(0)
    code, out, err = run(api, "import", str(path), fake_time=fake_time)
    assert code == 0, err
    assert "Committed import imp1: 1 counted" in out
    assert fake_time.sleeps == [1, 1, 2]
    assert "committing failed (a backend is unavailable); trying again in 2 s" in err
    assert [r["path"] for r in api.requests].count("/v1/imports/imp1/commit") == 3

    api.requests.clear()
    answers[("POST", "/v1/imports")] = [(201, {"id": "imp2", "status": "open"}, {})]
    answers[("PUT", "/v1/imports/imp2/batches/0")] = [
        (409, {"error": {"code": "conflict", "message": "the import is committing"}}, {})]
    code, out, err = run(api, "import", str(path), fake_time=fake_time)
    assert code == 4 and "the import is committing" in err
    assert len(api.requests) == 2
