"""The REST API through real HTTP (`chalice local` on a moto server): each endpoint's error
cases, CORS and CSV (the legacy endpoint: test_legacy_endpoint.py)."""

import pytest
import requests

from tests.support.keyed_api import keyed_api, seed_usage

ORIGIN = "https://frontend.example"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("api"), {"CORS_ORIGINS": ORIGIN, "STAGE": "dev"}) as running:
        running.end = seed_usage("payments-api", minutes=20)
        yield running


def get(api, path, **kwargs):
    return requests.get(f"{api.url}{path}", timeout=20, **kwargs)


@pytest.mark.parametrize("path, parameter", [
    ("/v1/services/payments-api/bandwidth?start=yesterday", "start"),
    ("/v1/services/payments-api/bandwidth?end=soon", "end"),
    ("/v1/services/payments-api/bandwidth?start=2000&end=1000", "start"),
    ("/v1/services/payments-api/bandwidth?start=0&end=31536000&step=1m", "step"),
    ("/v1/services/payments-api/bandwidth?step=7m", "step"),
    ("/v1/services/payments-api/bandwidth?direction=up", "direction"),
    ("/v1/services/payments-api/stats?step=2h", "step"),
    ("/v1/services?limit=0", "limit"),
    ("/v1/services?sort=size", "sort"),
])
def test_bad_parameters_are_400_naming_the_parameter(api, path, parameter):
    response = get(api, path)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request" and response.json()["error"]["parameter"] == parameter


@pytest.mark.parametrize("path", ["/v1/services/nope", "/v1/services/nope/bandwidth", "/v1/services/nope/stats",
                                  "/v1/services/payments-api/quota"])
def test_unknown_things_are_404_with_a_json_error(api, path):
    response = get(api, path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_bodies_malformed_oversized_or_with_unknown_fields_change_nothing(api):
    url = f"{api.url}/v1/services/payments-api/quota"
    headers = {"Content-Type": "application/json"}
    assert requests.put(url, data="{nope", headers=headers, timeout=20).status_code == 400
    big = '{"limit_bytes": 1, "notify": ["' + "a" * 70_000 + '@x.io"]}'
    assert requests.put(url, data=big, headers=headers, timeout=20).status_code == 413
    unknown = requests.put(url, json={"limit_bytes": 1, "colour": "red"}, timeout=20)
    assert unknown.status_code == 400 and unknown.json()["error"]["parameter"] == "colour"
    assert get(api, "/v1/services/payments-api/quota").status_code == 404
    assert get(api, "/v1/quota-audit").json()["entries"] == []


def test_cors_allows_only_the_configured_origin(api):
    allowed = get(api, "/v1/services", headers={"Origin": ORIGIN})
    other = get(api, "/v1/services", headers={"Origin": "https://elsewhere.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = get(api, "/v1/services/nope", headers={"Origin": ORIGIN})
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # errors are readable by the frontend


def test_csv_by_accept_header_and_by_format(api):
    query = f"start={api.end - 600}&end={api.end}&step=5m&direction=egress"
    by_header = get(api, f"/v1/services/payments-api/bandwidth?{query}", headers={"Accept": "text/csv"})
    by_param = get(api, f"/v1/services/payments-api/bandwidth?{query}&format=csv")
    assert by_header.headers["Content-Type"].startswith("text/csv") and by_header.text == by_param.text
    lines = by_header.text.splitlines()
    assert lines[0] == "time,service,direction,route,bytes,partial"
    assert [line.split(",")[-2:] for line in lines[1:]] == [["5000", "false"], ["5000", "false"]]


def test_each_read_endpoint_answers(api):
    for path in ("/v1/health", "/v1/collector/status", "/v1/services", "/v1/services/payments-api",
                 f"/v1/services/payments-api/bandwidth?start={api.end - 3600}&end={api.end}",
                 f"/v1/services/payments-api/stats?start={api.end - 3600}&end={api.end}&step=1h",
                 "/v1/services/payments-api/alerts", "/v1/quotas", "/v1/quota-rules", "/v1/quota-audit",
                 "/v1/schemas/quota", "/v1/schemas/quota-rules", "/openapi.json"):
        response = get(api, path)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json"), path
    for path in ("/docs", "/dashboard"):
        assert get(api, path).headers["Content-Type"].startswith("text/html")
    assert get(api, "/", allow_redirects=False).headers["Location"] == "dashboard"  # relative: prefix-safe


def test_path_parameters_are_percent_decoded(api):
    """A service name as clients encode it (encodeURIComponent, urllib's quote) is that name."""
    assert get(api, "/v1/services/payments%2Dapi").json()["service"] == "payments-api"
    url = f"{api.url}/v1/services/search%20%28beta%29/quota"
    assert requests.put(url, json={"limit_bytes": 1000}, timeout=20).status_code == 200
    assert [q["service"] for q in get(api, "/v1/quotas").json()["quotas"]] == ["search (beta)"]
    assert get(api, "/v1/services/search (beta)/quota".replace(" ", "%20")).json()["limit_bytes"] == 1000
    assert requests.delete(url, timeout=20).status_code == 204


@pytest.mark.parametrize("step", ["5m", "15m", "1h", "1d"])
def test_every_step_adds_up_to_the_overview_period_usage(api, step):
    """Collection began inside the 15m, 1h and 1d buckets and the last one is still filling:
    those points hold what was collected and say partial, so every step sums to the same bytes."""
    from chalicelib.core.timeutil import parse_time

    summary = get(api, "/v1/services/payments-api").json()
    start, end = parse_time(summary["period"]["start"]), parse_time(summary["period"]["end"])
    body = get(api, f"/v1/services/payments-api/bandwidth?start={start}&end={end}&step={step}").json()
    totals = {s["direction"]: sum(p["bytes"] for p in s["points"] if p["bytes"] is not None) for s in body["series"]}
    assert totals == {"ingress": 200, "egress": 20_000} == {d: summary["usage"][d] for d in ("ingress", "egress")}
    partial = [p for p in body["series"][0]["points"] if p["partial"]]
    assert all(p["bytes"] is not None for p in partial) and (step == "5m" or partial)


def test_two_admins_changing_one_quota_at_once_one_wins_the_other_gets_412(api):
    url = f"{api.url}/v1/services/concurrent-api/quota"
    first = requests.put(url, json={"limit_bytes": 100}, timeout=20)
    assert first.status_code == 200 and first.headers["ETag"] == '"1"'
    etag = get(api, "/v1/services/concurrent-api/quota").headers["ETag"]  # both admins read this

    def change(limit):
        return requests.put(url, json={"limit_bytes": limit}, headers={"If-Match": etag}, timeout=20)
    # One after the other, both naming the version both read: the moto server does not isolate
    # two transactions that truly overlap (both conditions can pass), which DynamoDB does; the
    # overlapping race is checked deterministically in tests/unit/test_quota_versions.py.
    answers = [change(200), change(300)]
    assert sorted(a.status_code for a in answers) == [200, 412]
    won = next(a for a in answers if a.status_code == 200)
    lost = next(a for a in answers if a.status_code == 412)
    assert lost.json()["error"]["current_version"] == won.headers["ETag"] == '"2"'
    stored = get(api, "/v1/services/concurrent-api/quota")
    assert stored.headers["ETag"] == '"2"' and stored.json()["limit_bytes"] == won.json()["limit_bytes"]
    mine = [(e["old"]["limit_bytes"] if e["old"] else None, e["new"]["limit_bytes"])
            for e in get(api, "/v1/quota-audit").json()["entries"] if e["key"] == "quota/concurrent-api"]
    assert mine == [(100, won.json()["limit_bytes"]), (None, 100)]
    # a stale delete changes nothing either
    assert requests.delete(url, headers={"If-Match": etag}, timeout=20).status_code == 412
    assert get(api, "/v1/services/concurrent-api/quota").status_code == 200
