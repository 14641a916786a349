"""API keys, roles and throttling through real HTTP: `chalice local` on a moto server process,
configured with keys and tight limits (10 per minute per key, 2 per second overall)."""
import threading
import time

import pytest
import requests

from tests.support.keyed_api import keyed_api


READ = "it-read-7c1f0e9b2d"
ADMIN = "it-admin-4a8d63f05e"
SPARE = [f"it-spare-{i}-91b3c7d2" for i in range(6)]  # fresh keys: untouched per-key buckets
PER_MINUTE = 10
# The overall limit is wide on the API most tests use, so no test waits for a bucket to refill or
# paces its requests; one API of its own (tight_api) has a tight one. How buckets refill over
# time is specified with a fake clock in tests/unit/test_access.py, not with sleeps here.
WIDE_PER_SECOND, TIGHT_PER_SECOND = 1000, 2


def _keyed(tmp_path_factory, name, per_second):
    keys = ",".join([f"{READ}:read", f"{ADMIN}:admin"] + [f"{k}:read" for k in SPARE])
    env = {"API_KEYS": keys, "THROTTLE_PER_KEY_PER_MINUTE": str(PER_MINUTE), "THROTTLE_PER_SECOND": str(per_second)}
    return keyed_api(tmp_path_factory.mktemp(name), env)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with _keyed(tmp_path_factory, "access", WIDE_PER_SECOND) as server:
        yield server


@pytest.fixture
def tight_api(tmp_path_factory):
    """Its overall bucket is full: nothing else calls it."""
    with _keyed(tmp_path_factory, "access-tight", TIGHT_PER_SECOND) as server:
        yield server


@pytest.fixture
def call(api):
    def call(method, path, key=None, **kwargs):
        headers = {"x-api-key": key} if key else {}
        return requests.request(method, api.url + path, headers=headers, timeout=10, **kwargs)

    return call


def error_of(response):
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def test_open_routes_answer_without_a_key(call):
    assert call("GET", "/v1/health").status_code == 200


def test_a_missing_key_is_401(call):
    response = call("GET", "/v1/services")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert "x-api-key" in error_of(response)["message"]


def test_an_unknown_key_is_401(call):
    response = call("GET", "/v1/services", key="not-a-key-at-all")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"


def test_a_read_key_reads(call):
    assert call("GET", "/v1/services", key=READ).json() == {"services": [], "total_count": 0, "next_cursor": None}


def test_a_read_key_on_admin_endpoints_is_403(call):
    put = call("PUT", "/v1/services/pay/quota", key=READ, json={"limit_bytes": 1000})
    assert put.status_code == 403 and error_of(put)["code"] == "forbidden"
    assert call("GET", "/v1/quota-audit", key=READ).status_code == 403
    assert call("GET", "/v1/services/pay/quota", key=READ).status_code == 404  # reading is allowed


def test_an_admin_key_manages_quotas_and_reads(call):
    assert call("PUT", "/v1/services/pay/quota", key=ADMIN, json={"limit_bytes": 1000}).status_code == 200
    assert call("GET", "/v1/services/pay/quota", key=ADMIN).json()["limit_bytes"] == 1000
    audit = call("GET", "/v1/quota-audit", key=ADMIN).json()["entries"]
    assert audit[0]["key"] == "quota/pay" and audit[0]["action"] == "put"
    assert call("DELETE", "/v1/services/pay/quota", key=ADMIN).status_code == 204


def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_go_on(call):
    key = SPARE[0]
    statuses = [call("GET", "/v1/quotas", key=key).status_code for _ in range(PER_MINUTE)]
    assert statuses == [200] * PER_MINUTE
    refused = call("GET", "/v1/quotas", key=key)
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "throttled" and "this key's limit is 10 per minute" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 // PER_MINUTE
    assert call("GET", "/v1/quotas", key=SPARE[5]).status_code == 200


def test_the_overall_limit_holds_across_keys(tight_api):
    api, per_second = tight_api, TIGHT_PER_SECOND
    keys = SPARE[1:5]  # each far below its own per-minute limit
    results = []
    barrier = threading.Barrier(len(keys) * 2)

    def burst(key):
        barrier.wait()
        response = requests.get(api.url + "/v1/quotas", headers={"x-api-key": key}, timeout=10)
        results.append((time.monotonic(), response))

    started = time.monotonic()
    threads = [threading.Thread(target=burst, args=(k,)) for k in keys * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(at for at, _ in results) - started
    ok = [r for _, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code == 429]
    assert len(ok) + len(refused) == len(threads)
    assert len(ok) <= per_second + int(per_second * elapsed) and refused
    for response in refused:
        assert response.headers["Retry-After"] == "1"
        assert "the API's overall limit is 2 per second" in error_of(response)["message"]


def test_keys_never_appear_in_the_server_log(api, call):
    call("GET", "/v1/services", key="an-unknown-key-5d2f")
    call("PUT", "/v1/quota-rules", key=READ, json={"rules": []})
    log = api.log_text()
    assert "refused 401" in log and "refused 403" in log and "key#" in log
    for key in [READ, ADMIN, *SPARE, "an-unknown-key-5d2f"]:
        assert key not in log
