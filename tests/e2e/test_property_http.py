"""Property: whatever a caller sends to any route, the API never answers 5xx, every answer is
strict JSON (no NaN / Infinity) or the route's own format, and a refused change stores nothing.

Hypothesis drives requests against `chalice local` in a strict stage on a moto server (real
HTTP); the inputs mix hostile values (huge and non-finite numbers, deep nesting, control
characters, 3,000-character names, internal webhook URLs, invalid addresses, forged cursors)
with valid ones, so both the refusals and the paths behind validation are reached. Bounded:
a fixed number of examples per route, well under a minute in all."""
import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.keyed_api import seed_usage
from tests.support.strict_api import ADMIN, stored, strict_api

SERVICE = "payments-api"
EXAMPLES = 50


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with strict_api(tmp_path_factory.mktemp("property")) as running:
        seed_usage(SERVICE, minutes=10)
        yield running


# -- the inputs ----------------------------------------------------------------------------------
hostile_numbers = st.sampled_from(["9" * 400, "1e999", "NaN", str(2**64), "-1", "1_000", "\u0661\u0660", ""])
texts = st.text(max_size=40) | st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=300)
long_names = st.integers(min_value=201, max_value=3000).map(lambda n: "s" * n)


def half(common, rest):
    """``common`` half the time: the known service and hostile numbers must come up often enough
    to reach the code behind the first checks within a bounded number of examples."""
    return st.booleans().flatmap(lambda pick: common if pick else rest)


services = half(st.just(SERVICE), st.just("unknown-service") | texts.filter(bool) | long_names)
query_values = half(hostile_numbers, texts | st.sampled_from([
    "auto", "1m", "5m", "1h", "1d", "7m", "json", "csv", "route", "usage", "name", "percent", "asc", "desc",
    "ingress", "egress", "total", "all", "5m", "1h30m", "2026-11-25T10:00:00Z", "2026-13-45T99:00:00Z",
    "eyJvIjogMWU5OTl9", "eyJvIjogMX0=", "garbage"]))
# A JSON value strategy with the numbers json.dumps writes but JSON forbids (NaN, Infinity).
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400)
                | st.floats() | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
emails = st.sampled_from(["ops@example.com", "a@b@c", "ops@example.com\r\nBcc: x@example.com", "x@localhost",
                          "Ops@Example.COM", "\u00fc@example.com", "ops@ex\u00e4mple.de", ""]) | texts
webhooks = st.sampled_from(["https://hooks.example.com/x", "https://169.254.169.254/latest/meta-data/",
                            "http://hooks.example.com/x", "https://2130706433/", "https://0x7f000001/",
                            "https://10.0.0.1/", "https://[::ffff:127.0.0.1]/", "https://localhost/"]) | texts
quota_fields = {
    "limit_bytes": json_scalars | st.integers(min_value=1, max_value=2**53 + 10),
    "period": st.sampled_from(["day", "week", "month", "year"]) | json_scalars,
    "anchor_day": st.integers(min_value=-5, max_value=40) | json_scalars,
    "direction": st.sampled_from(["total", "ingress", "egress", "up"]),
    "thresholds": st.lists(st.floats() | st.integers(min_value=-10, max_value=2000), max_size=12),
    "notify": st.lists(emails, max_size=4),
    "forecast": json_scalars,
    "webhook_url": webhooks,
}
quotas = st.fixed_dictionaries({"limit_bytes": quota_fields["limit_bytes"]},
                               optional={k: v for k, v in quota_fields.items() if k != "limit_bytes"})
patterns = st.sampled_from(["pay*", "(a+)+$", "*a*a*a*a*a*a*a*b", "payments-?pi", "", "p\n"]) | texts
rules = st.fixed_dictionaries({"rules": st.lists(
    st.fixed_dictionaries({"pattern": patterns, "limit_bytes": quota_fields["limit_bytes"]},
                          optional={k: v for k, v in quota_fields.items() if k != "limit_bytes"}), max_size=3)})
raw_bodies = st.sampled_from([
    "[" * 60_000, '{"a":' * 12_000, "[" * 30_000 + "]" * 30_000, '{"limit_bytes": NaN}', '{"limit_bytes": 1e999}',
    '{"limit_bytes": ' + "9" * 400 + "}", '"\\ud800"', "\xff\xfe", "{nope", "", "null", "[]"])


def encoded(value) -> str:
    """A body as bytes-to-send: json.dumps writes NaN / Infinity for non-finite floats, as
    careless clients do."""
    return value if isinstance(value, str) else json.dumps(value)


bodies = {"quota": raw_bodies | quotas.map(encoded) | json_values.map(encoded),
          "rules": raw_bodies | rules.map(encoded) | json_values.map(encoded)}

# Every route: (method, path, query parameter names, body kind or None).
ROUTES = [
    ("GET", "/v1/health", (), None),
    ("GET", "/v1/collector/status", (), None),
    ("GET", "/v1/services", ("sort", "order", "limit", "cursor"), None),
    ("GET", "/v1/services/{service}", (), None),
    ("GET", "/v1/services/{service}/bandwidth", ("start", "end", "step", "direction", "route", "split", "format"),
     None),
    ("GET", "/v1/services/{service}/stats", ("start", "end", "step"), None),
    ("GET", "/metrics/bandwidth_used", ("service", "type", "lookback_duration", "route"), None),
    ("GET", "/v1/services/{service}/quota", (), None),
    ("PUT", "/v1/services/{service}/quota", (), "quota"),
    ("DELETE", "/v1/services/{service}/quota", (), None),
    ("GET", "/v1/quotas", (), None),
    ("GET", "/v1/quota-rules", (), None),
    ("PUT", "/v1/quota-rules", (), "rules"),
    ("GET", "/v1/quota-audit", ("limit",), None),
    ("GET", "/v1/schemas/quota", (), None),
    ("GET", "/v1/schemas/quota-rules", (), None),
    ("GET", "/v1/services/{service}/alerts", (), None),
    ("GET", "/openapi.json", (), None),
    ("GET", "/docs/{asset}", (), None),
]


@st.composite
def requests_for(draw, route):
    method, template, names, body_kind = route
    path = template
    if "{service}" in path:
        path = path.replace("{service}", quote(draw(services), safe=""))
    if "{asset}" in path:
        path = path.replace("{asset}", quote(draw(texts | st.just("swagger-ui.css")), safe=""))
    values = half(services, query_values) if "service" in names else query_values
    params = draw(st.dictionaries(st.sampled_from(names), values, max_size=len(names))) if names else {}
    body = draw(bodies[body_kind]) if body_kind else None
    return method, path, params, body


def strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"the answer holds {name}, which browsers' JSON.parse refuses")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_no_route_answers_5xx_and_a_refused_change_stores_nothing(api, route):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=requests_for(route))
    def check(request):
        method, path, params, body = request
        before = stored(api) if method != "GET" else None
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        response = requests.request(method, f"{api.url}{path}", params=params, data=data, timeout=30,
                                    headers={**ADMIN, "Content-Type": "application/json"})
        assert response.status_code < 500, (method, path, params, body and body[:200], response.text[:500])
        content_type = response.headers.get("Content-Type", "")
        if response.status_code >= 400:
            assert content_type.startswith("application/json"), response.text[:200]
            if before is not None:
                assert stored(api) == before, (method, path, body and body[:200])
        if content_type.startswith("application/json") and response.text:
            strict_json(response.text)

    check()
