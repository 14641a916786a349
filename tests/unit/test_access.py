"""API keys, roles and throttling (chalicelib/api/access.py) with a fake clock, and the settings behind them."""
import hashlib
import json
import logging
from types import SimpleNamespace

import pytest
from chalice.app import CaseInsensitiveMapping

import app
from chalicelib.api.access import AccessGuard, Throttle, actor, required_role, startup_notice
from chalicelib.api.http import endpoint
from chalicelib.core.settings import ConfigError, from_env
from tests.conftest import BASE_ENV

READ_KEY, ADMIN_KEY = "r3ad-key-0123456789", "adm1n-key-0123456789"
INGEST_KEY = "1ngest-key-0123456789"


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def settings(**env):
    return from_env({**BASE_ENV, **{k.upper(): v for k, v in env.items()}})


def guard(clock=None, per_minute=10, per_second=100, **env):
    env.setdefault("api_keys", f"{READ_KEY}:read,{ADMIN_KEY}:admin,{INGEST_KEY}:ingest")
    s = settings(throttle_per_key_per_minute=str(per_minute), throttle_per_second=str(per_second), **env)
    return AccessGuard.from_settings(s, clock=clock or FakeClock(), routes=app.app.routes)


def event(method, route, key=None):
    headers = {"x-api-key": key} if key else {}
    return SimpleNamespace(method=method, path=route, headers=CaseInsensitiveMapping(headers),
                           context={"resourcePath": route, "identity": {"sourceIp": "127.0.0.1"}})


def status_of(g, method, route, key=None):
    return g.check(method, route, key)[1].status if g.check(method, route, key)[1] else 200


def ok(_event):
    return SimpleNamespace(status_code=200, headers={}, body="ok")


# -- roles ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method, route, role", [
    ("GET", "/v1/health", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/", None),
    ("GET", "/dashboard", None),
    ("OPTIONS", "/v1/services/{service}/quota", None),
    ("GET", "/v1/services", "read"),
    ("GET", "/v1/services/{service}/bandwidth", "read"),
    ("GET", "/v1/services/{service}/stats", "read"),
    ("GET", "/v1/services/{service}/alerts", "read"),
    ("GET", "/v1/services/{service}/quota", "read"),
    ("GET", "/metrics/bandwidth_used", "read"),
    ("PUT", "/v1/services/{service}/quota", "admin"),
    ("DELETE", "/v1/services/{service}/quota", "admin"),
    ("PUT", "/v1/quota-rules", "admin"),
    ("GET", "/v1/quota-audit", "admin"),
    ("POST", "/v1/events", "ingest"),
    ("POST", "/v1/imports", "ingest"),
    ("PUT", "/v1/imports/{import_id}/batches/{number}", "ingest"),
    ("POST", "/v1/imports/{import_id}/commit", "ingest"),
    ("GET", "/v1/imports", "read"),
    ("GET", "/v1/some-future-route", "read"),
    ("PUT", "/v1/some-future-route", "admin"),
    ("POST", "/v1/some-future-route", "admin"),
])
def test_each_route_needs_its_role(method, route, role):
    assert required_role(method, route, app.app.routes) == role


PUBLIC_ROUTES = {("GET", "/v1/health"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/{asset}"),
                 ("GET", "/"), ("GET", "/dashboard")}
# Writes a read key may make: none today. A route added here is a decision, not an accident.
READ_WRITES = set()
# The only routes an ingest key may call (pushing usage); it may call nothing else, read nothing.
INGEST_ROUTES = {("POST", "/v1/events"), ("POST", "/v1/imports"), ("PUT", "/v1/imports/{import_id}/batches/{number}"),
                 ("POST", "/v1/imports/{import_id}/commit")}


def app_routes():
    return [(method, path, entry) for path, methods in app.app.routes.items() for method, entry in methods.items()]


def test_every_route_declares_its_role_where_it_is_declared():
    undeclared = {(m, p) for m, p, entry in app_routes() if getattr(entry.view_function, "role", None) is None}
    assert undeclared == set()


def test_every_route_that_is_not_get_needs_admin_unless_declared_otherwise():
    writes = {(m, p): required_role(m, p, app.app.routes) for m, p, _ in app_routes() if m != "GET"}
    assert writes and {r for r, role in writes.items() if role not in ("admin", "ingest")} == READ_WRITES
    assert {r for r, role in writes.items() if role == "ingest"} == INGEST_ROUTES


def test_an_ingest_key_may_call_exactly_the_push_routes_and_read_keys_none_of_them():
    g = guard(per_minute=10_000)
    keyed = [(m, p) for m, p, _ in app_routes() if required_role(m, p, app.app.routes) is not None]
    assert {(m, p) for m, p in keyed if status_of(g, m, p, INGEST_KEY) == 200} == INGEST_ROUTES
    assert all(status_of(g, m, p, INGEST_KEY) == 403 for m, p in keyed if (m, p) not in INGEST_ROUTES)
    assert all(status_of(g, m, p, READ_KEY) == 403 for m, p in INGEST_ROUTES)
    assert all(status_of(g, m, p, ADMIN_KEY) == 200 for m, p in keyed)
    denial = g.check("GET", "/v1/services", INGEST_KEY)[1]
    assert "needs the read role; this key has the ingest role" in denial.message


def test_the_public_routes_are_exactly_health_docs_and_the_dashboard():
    public = {(m, p) for m, p, _ in app_routes() if required_role(m, p, app.app.routes) is None}
    assert public == PUBLIC_ROUTES
    # ...and they alone skip API Gateway's key check in AWS
    assert {(m, p) for m, p, entry in app_routes() if not entry.api_key_required} == PUBLIC_ROUTES


def test_the_api_description_asks_for_a_key_exactly_where_a_route_needs_one():
    from chalicelib.api.apidocs import openapi_spec

    paths = openapi_spec()["paths"]
    described = [(m, p) for m, p, _ in app_routes() if p in paths]
    assert len(described) >= 15  # the pages (/, /dashboard, /docs...) are not API operations
    for method, path in described:
        operation = paths[path][method.lower()]
        assert (operation["security"] == []) == (required_role(method, path, app.app.routes) is None), (method, path)


def test_a_new_write_route_without_a_declared_role_needs_an_admin_key():
    routes = {"/v1/new-thing": {"PUT": SimpleNamespace(view_function=endpoint(lambda: {}))}}
    g = AccessGuard.from_settings(settings(api_keys=f"{READ_KEY}:read,{ADMIN_KEY}:admin"), clock=FakeClock(),
                                  routes=routes)
    assert g.check("PUT", "/v1/new-thing", READ_KEY)[1].status == 403
    assert g.check("PUT", "/v1/new-thing", ADMIN_KEY)[1] is None


def test_a_role_that_is_not_known_is_refused_when_the_route_is_declared():
    with pytest.raises(ValueError, match="role must be one of public, read, ingest, admin"):
        endpoint(role="owner")


def test_missing_key_is_401():
    caller, denial = guard().check("GET", "/v1/services", None)
    assert caller is None and (denial.status, denial.code) == (401, "unauthorized")
    assert "x-api-key" in denial.message


def test_unknown_key_is_401():
    assert guard().check("GET", "/v1/services", "guessed")[1].status == 401


def test_read_key_on_an_admin_route_is_403():
    denial = guard().check("PUT", "/v1/services/{service}/quota", READ_KEY)[1]
    assert (denial.status, denial.code) == (403, "forbidden") and "admin role" in denial.message


def test_read_key_reads_and_admin_key_does_everything():
    g = guard()
    assert status_of(g, "GET", "/v1/services/{service}/bandwidth", READ_KEY) == 200
    assert status_of(g, "GET", "/v1/services/{service}/bandwidth", ADMIN_KEY) == 200
    assert status_of(g, "DELETE", "/v1/services/{service}/quota", ADMIN_KEY) == 200
    assert status_of(g, "GET", "/v1/quota-audit", ADMIN_KEY) == 200


def test_open_routes_need_no_key_even_when_keys_are_configured():
    assert status_of(guard(), "GET", "/v1/health") == 200


def test_a_hashed_key_in_the_configuration_accepts_the_key():
    digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    g = guard(api_keys=f"sha256:{digest}:admin")
    assert status_of(g, "PUT", "/v1/quota-rules", ADMIN_KEY) == 200
    assert status_of(g, "PUT", "/v1/quota-rules", f"sha256:{digest}") == 401


def test_dev_stage_without_keys_is_open_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="chalicelib.api.access"):
        g = guard(api_keys="", stage="dev")
    assert status_of(g, "PUT", "/v1/quota-rules") == 200
    assert "OPEN" in caplog.text and "OPEN" in g.describe()


def test_other_stages_without_keys_fail_closed():
    g = guard(api_keys="", stage="prod", cors_origins="https://bandwidth.example.com")
    assert status_of(g, "GET", "/v1/services", "anything") == 401
    assert status_of(g, "GET", "/v1/health") == 200
    assert "CLOSED" in g.describe()


# -- throttling -----------------------------------------------------------------------------
def test_a_key_gets_its_burst_then_429_with_retry_after_until_a_token_refills():
    clock = FakeClock()
    g = guard(clock, per_minute=10, per_second=100)
    assert [status_of(g, "GET", "/v1/services", READ_KEY) for _ in range(10)] == [200] * 10
    denial = g.check("GET", "/v1/services", READ_KEY)[1]
    assert (denial.status, denial.code, denial.retry_after) == (429, "throttled", 6)
    assert "10 per minute" in denial.message
    clock.advance(5.9)
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 429
    clock.advance(0.1)
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 200
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 429


def test_retry_after_counts_down_in_whole_seconds():
    clock = FakeClock()
    g = guard(clock, per_minute=10, per_second=100)
    for _ in range(10):
        g.check("GET", "/v1/services", READ_KEY)
    clock.advance(2.5)
    assert g.check("GET", "/v1/services", READ_KEY)[1].retry_after == 4  # 3.5 s left, rounded up


def test_keys_have_separate_buckets():
    g = guard(FakeClock(), per_minute=3, per_second=100)
    assert [status_of(g, "GET", "/v1/services", READ_KEY) for _ in range(4)] == [200, 200, 200, 429]
    assert status_of(g, "GET", "/v1/services", ADMIN_KEY) == 200


def test_the_overall_limit_holds_across_keys():
    clock = FakeClock()
    g = guard(clock, per_minute=100, per_second=2)
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 200
    assert status_of(g, "GET", "/v1/services", ADMIN_KEY) == 200
    denial = g.check("GET", "/v1/services", READ_KEY)[1]
    assert (denial.status, denial.retry_after) == (429, 1) and "2 per second" in denial.message
    clock.advance(0.5)
    assert status_of(g, "GET", "/v1/services", ADMIN_KEY) == 200


def test_a_refused_request_spends_nothing():
    clock = FakeClock()
    g = guard(clock, per_minute=1, per_second=2)
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 200
    for _ in range(5):  # READ_KEY's bucket is empty: these must not drain the overall one
        assert status_of(g, "GET", "/v1/services", READ_KEY) == 429
    assert status_of(g, "GET", "/v1/services", ADMIN_KEY) == 200


def test_unauthorized_and_forbidden_requests_are_not_counted():
    g = guard(FakeClock(), per_minute=1, per_second=100)
    for _ in range(3):
        g.check("PUT", "/v1/quota-rules", READ_KEY)
    assert status_of(g, "GET", "/v1/services", READ_KEY) == 200


def test_the_open_dev_stage_applies_only_the_overall_limit():
    g = guard(FakeClock(), api_keys="", per_minute=1, per_second=3)
    assert [status_of(g, "GET", "/v1/services") for _ in range(4)] == [200, 200, 200, 429]


def test_throttle_never_refuses_when_time_passes_at_the_allowed_rate():
    clock = FakeClock()
    throttle = Throttle(per_key_per_minute=10, per_second=100, clock=clock)
    for _ in range(10):
        assert throttle.admit("k").allowed
    for _ in range(20):
        clock.advance(6)
        assert throttle.admit("k").allowed


def test_throttling_is_off_in_lambda_by_default_and_can_be_forced():
    assert settings().throttle_enabled is True
    assert settings(aws_lambda_function_name="bandwidth-meter-prod").throttle_enabled is False
    assert settings(aws_lambda_function_name="f", throttle_enabled="true").throttle_enabled is True
    digests = ",".join(f"sha256:{hashlib.sha256(k.encode()).hexdigest()}:{r}"
                       for k, r in ((READ_KEY, "read"), (ADMIN_KEY, "admin")))
    g = guard(aws_lambda_function_name="f", per_minute=1, api_keys=digests, stage="prod")
    assert g.throttle is None and [status_of(g, "GET", "/v1/services", READ_KEY) for _ in range(3)] == [200] * 3


# -- the middleware and logs ------------------------------------------------------------------
def test_guard_answers_429_with_retry_after_and_a_json_error():
    g = guard(FakeClock(), per_minute=1)
    assert g.guard(event("GET", "/v1/services", READ_KEY), ok).status_code == 200
    response = g.guard(event("GET", "/v1/services", READ_KEY), ok)
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert response.body["error"]["code"] == "throttled"


def test_guard_reads_the_route_template_from_the_request_context():
    e = event("PUT", "/v1/services/pay/quota", READ_KEY)
    e.context["resourcePath"] = "/v1/services/{service}/quota"
    assert guard().guard(e, ok).status_code == 403


def test_logs_name_keys_by_a_short_hash_never_the_key(caplog):
    g = guard(FakeClock(), per_minute=1)
    with caplog.at_level(logging.DEBUG, logger="chalicelib.api.access"):
        g.guard(event("PUT", "/v1/quota-rules", READ_KEY), ok)
        g.guard(event("GET", "/v1/services", "not-a-configured-key"), ok)
        g.guard(event("GET", "/v1/services", ADMIN_KEY), ok)
        g.guard(event("GET", "/v1/services", ADMIN_KEY), ok)
    text = caplog.text
    assert READ_KEY not in text and ADMIN_KEY not in text and "not-a-configured-key" not in text
    assert "key#" + hashlib.sha256(READ_KEY.encode()).hexdigest()[:8] in text
    assert "throttled" in text and "refused 403" in text and "refused 401" in text


def test_the_audit_actor_is_the_short_hash_of_the_key():
    e = event("PUT", "/v1/quota-rules", ADMIN_KEY)
    guard().guard(e, ok)
    assert actor(e) == "key#" + hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:8]


def test_startup_notice_summarises_keys_and_limits():
    notice = startup_notice(settings(api_keys=f"{READ_KEY}:read,{ADMIN_KEY}:admin", throttle_per_second="2"))
    assert notice == "2 API keys (1 read, 1 admin) from API_KEYS; throttle 600/min per key, 2/s overall"


# -- settings -------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ("secret-key", "entry 1 is not KEY:ROLE"),
    ("k1:read,secret-key:owner", "entry 2 has role 'owner'"),
    ("k1:read,k1:admin", "entry 2 repeats a key"),
    ("sha256:abc:read", "64 hex digits"),
])
def test_malformed_api_keys_fail_fast_without_echoing_the_key(value, message):
    with pytest.raises(ConfigError) as raised:
        settings(api_keys=value)
    assert message in str(raised.value) and "secret-key" not in str(raised.value)


def test_settings_keep_digests_only_and_never_show_them():
    s = settings(api_keys=f"{READ_KEY}:read")
    assert s.api_keys == ((hashlib.sha256(READ_KEY.encode()).hexdigest(), "read"),)
    assert READ_KEY not in repr(s) and "api_keys" not in repr(s)


@pytest.mark.parametrize("name", ["THROTTLE_PER_KEY_PER_MINUTE", "THROTTLE_PER_SECOND"])
def test_limits_must_be_positive(name):
    with pytest.raises(ConfigError, match=name):
        from_env({**BASE_ENV, name: "0"})


# -- in-process through the app ---------------------------------------------------------------
@pytest.fixture
def keyed_client(aws, config):
    from chalice.test import Client

    config.set(API_KEYS=f"{READ_KEY}:read,{ADMIN_KEY}:admin", THROTTLE_PER_KEY_PER_MINUTE=3)
    config.start()
    from app import app

    with Client(app) as c:
        yield c


def test_the_app_enforces_keys_roles_and_limits(keyed_client):
    http = keyed_client.http
    assert http.get("/v1/health").status_code == 200
    assert http.get("/v1/quotas").status_code == 401
    assert http.get("/v1/quota-audit", headers={"x-api-key": READ_KEY}).status_code == 403
    assert http.get("/v1/quota-audit", headers={"x-api-key": ADMIN_KEY}).status_code == 200
    statuses = [http.get("/v1/quotas", headers={"x-api-key": READ_KEY}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = http.get("/v1/quotas", headers={"x-api-key": READ_KEY})
    assert int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.body)["error"]["code"] == "throttled"
