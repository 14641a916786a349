"""``bwmeter consumer quota get|set|delete``: a consumer's quota from the command line, as a
service's, against the scripted loopback API of test_cli."""
import json

from tests.unit.test_cli import api, quota_calls, run  # noqa: F401 (api is a fixture)


def consumers_seen(respond, consumers=("acme-mobile",)):
    """``respond``, with GET /v1/consumers/NAME answering 200 for the consumers seen (404 otherwise)
    and GET /v1/consumers listing them: what `consumer quota set` asks before storing."""
    def answer(r):
        if r["method"] == "GET" and r["path"] == "/v1/consumers":
            return 200, {"consumers": [{"consumer": c} for c in consumers], "next_cursor": None}, {}
        if r["method"] == "GET" and r["path"].count("/") == 3 and r["path"].startswith("/v1/consumers/"):
            name = r["path"].rsplit("/", 1)[1]
            return (200, {"consumer": name}, {}) if name in consumers else (
                404, {"error": {"code": "not_found", "message": f"unknown consumer {name!r}"}}, {})
        return respond(r)

    return answer


def test_consumer_quota_set_changes_only_the_options_given_on_the_consumers_quota(api):
    stored = {"limit_bytes": 100, "period": "month", "notify": ["a@example.com"]}
    api.respond = consumers_seen(lambda r: (200, stored, {"ETag": '"3"'}) if r["method"] == "GET" else
                                 (200, r["body"], {"ETag": '"4"'}))
    code, out, _ = run(api, "consumer", "quota", "set", "acme-mobile", "--limit", "2GB", "--action", "reject")
    get, put = quota_calls(api)
    assert code == 0 and get["path"] == put["path"] == "/v1/consumers/acme-mobile/quota"
    assert put["method"] == "PUT" and put["headers"]["If-Match"] == '"3"'
    assert put["body"] == {**stored, "limit_bytes": 2 * 10**9, "action": "reject"}
    assert "Quota of consumer acme-mobile:" in out and "2,000,000,000 (2 GB)" in out


def test_consumer_quota_get_addresses_a_workspace_key_encoded(api):
    api.respond = lambda r: (200, {"limit_bytes": 5000, "period": "day", "direction": "total"}, {})
    code, out, _ = run(api, "consumer", "quota", "get", "eu:acme")
    assert code == 0 and api.requests[0]["raw_path"] == "/v1/consumers/eu%3Aacme/quota"
    assert "Quota of consumer eu:acme:" in out and "5,000 (5 KB)" in out


def test_consumer_quota_delete(api):
    api.respond = lambda r: (204, None, {})
    code, out, _ = run(api, "consumer", "quota", "delete", "acme-mobile")
    assert code == 0 and [(r["method"], r["path"]) for r in api.requests] == [
        ("DELETE", "/v1/consumers/acme-mobile/quota")]
    assert "Removed the quota of consumer acme-mobile." in out
    code, out, _ = run(api, "consumer", "quota", "delete", "acme-mobile", "--json")
    assert code == 0 and json.loads(out) == {"consumer": "acme-mobile", "deleted": True}


def test_consumer_quota_set_for_a_consumer_never_seen_names_the_closest_and_needs_force(api):
    api.respond = consumers_seen(lambda r: (404, {"error": {"code": "not_found", "message": "no quota"}}, {})
                                 if r["method"] == "GET" else (200, r["body"], {}), consumers=("acme-mobile",))
    code, _, err = run(api, "consumer", "quota", "set", "acme-mobil", "--limit", "1GB")
    assert code == 2 and "consumer acme-mobil has never been seen; did you mean acme-mobile?" in err
    assert "--force" in err and quota_calls(api) == []
    code, out, _ = run(api, "consumer", "quota", "set", "acme-mobil", "--limit", "1GB", "--force")
    assert code == 0 and [r["method"] for r in quota_calls(api)] == ["GET", "PUT"]


def test_consumer_without_its_arguments_prints_help_and_exits_2(api):
    code, _, err = run(api, "consumer", "quota", "get")
    assert code == 2 and "consumer needs quota, get, set or delete and a CONSUMER" in err and api.requests == []


def test_a_stale_consumer_quota_is_reported_as_changed_since_read(api):
    conflict = {"error": {"code": "precondition_failed",
                          "message": "the quota of consumer 'acme-mobile' changed since it was read"}}
    api.respond = consumers_seen(lambda r: (200, {"limit_bytes": 1}, {"ETag": '"1"'}) if r["method"] == "GET"
                                 else (412, conflict, {}))
    code, _, err = run(api, "consumer", "quota", "set", "acme-mobile", "--limit", "5")
    assert code == 4 and "412" in err and "changed since it was read" in err


def test_enforcement_lists_a_consumer_block_as_a_consumer(api):
    body = {"mode": "admin-api", "lift_pending": [], "blocked": [
        {"consumer": "acme", "kind": "consumer", "usage_bytes": 2_000_000, "limit_bytes": 1_000_000,
         "percent": 200.0, "reject_at": 100, "period_end": "2026-12-01T00:00:00Z", "at_gateway": True,
         "state": "blocked"}],
        "gateway": {"enabled": True, "last_reconcile": "2026-11-25T10:00:00Z", "blocked_count": 1,
                    "missing_consumers": ["ghost"], "last_error": None}, "deck": {}}
    api.respond = lambda r: (200, body, {})
    code, out, _ = run(api, "enforcement")
    row = next(line for line in out.splitlines() if line.startswith("consumer acme"))
    assert code == 0 and "2 MB" in row and row.endswith("blocked")
    assert "missing consumers: ghost" in out
