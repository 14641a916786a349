"""Hostile and careless input over real HTTP (`chalice local` in a strict stage on a moto server):
each is a 4xx with a JSON error, and nothing is stored (quotas, rules and audit read back)."""
import base64
import json

import pytest
import requests

from tests.support.keyed_api import seed_usage
from tests.support.strict_api import ADMIN, READ, stored, strict_api

SERVICE = "payments-api"
LONG_NAME = "s" * 3000


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with strict_api(tmp_path_factory.mktemp("hostile")) as running:
        running.end = seed_usage(SERVICE, minutes=20)
        yield running


def call(api, method, path, body=None, headers=ADMIN):
    data = body.encode() if isinstance(body, str) else body
    return requests.request(method, f"{api.url}{path}", data=data, timeout=30,
                            headers={**headers, "Content-Type": "application/json"})


def assert_refused(response, status=400, parameter=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] in ("bad_request", "payload_too_large") and error["message"]
    if parameter is not None:
        assert parameter in error.get("parameter", ""), error
    return error


def refused_and_unchanged(api, method, path, body, status=400, parameter=None):
    before = stored(api)
    error = assert_refused(call(api, method, path, body), status, parameter)
    assert stored(api) == before
    return error


QUOTA_PATH, RULES_PATH = f"/v1/services/{SERVICE}/quota", "/v1/quota-rules"


# -- JSON that Python's json module accepts but JSON does not ------------------------------
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_quota_are_refused(api, constant):
    error = refused_and_unchanged(api, "PUT", QUOTA_PATH, f'{{"limit_bytes": 1000, "thresholds": [{constant}]}}',
                                  parameter="body")
    assert constant.lstrip("-") in error["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_rules_are_refused(api, constant):
    refused_and_unchanged(api, "PUT", RULES_PATH, f'{{"rules": [{{"pattern": "p*", "limit_bytes": {constant}}}]}}',
                          parameter="body")


def test_a_number_that_overflows_to_infinity_is_refused(api):
    refused_and_unchanged(api, "PUT", QUOTA_PATH, '{"limit_bytes": 1e999}', parameter="body")


# -- numbers beyond what DynamoDB and JSON clients hold --------------------------------------
@pytest.mark.parametrize("limit", ["9" * 400, str(2**53), str(2**64), "-" + "9" * 30])
def test_limit_bytes_beyond_two_to_the_53_is_refused(api, limit):
    refused_and_unchanged(api, "PUT", QUOTA_PATH, f'{{"limit_bytes": {limit}}}')


def test_limit_bytes_of_exactly_two_to_the_53_minus_one_is_stored(api):
    response = call(api, "PUT", "/v1/services/largest/quota", json.dumps({"limit_bytes": 2**53 - 1}))
    assert response.status_code == 200 and response.json()["limit_bytes"] == 2**53 - 1
    assert call(api, "DELETE", "/v1/services/largest/quota").status_code == 204


@pytest.mark.parametrize("path, parameter", [
    ("/v1/services?limit=" + "9" * 400, "limit"),
    ("/v1/services?limit=1e3", "limit"),
    ("/v1/services?limit=1_000", "limit"),
    ("/v1/services?limit=%D9%A1%D9%A0", "limit"),  # Arabic-Indic digits, which int() reads
    ("/v1/quota-audit?limit=" + "1" * 5000, "limit"),
    (f"/v1/services/{SERVICE}/bandwidth?start=" + "1" * 400, "start"),
    (f"/v1/services/{SERVICE}/bandwidth?end=" + "9" * 400, "end"),
    (f"/v1/services/{SERVICE}/stats?start=" + "1" * 400, "start"),
    (f"/v1/services/{SERVICE}/bandwidth?start=1e999", "start"),
])
def test_oversized_or_odd_query_numbers_are_400_naming_the_parameter(api, path, parameter):
    assert_refused(call(api, "GET", path, headers=ADMIN if "audit" in path else READ), parameter=parameter)


# -- email addresses ---------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["a@b@c", "a@b@c.com", "ops@example.com\r\nBcc: all@example.com",
                                     "ops@example.com\n", "Ops Team <ops@example.com>", "ops@localhost",
                                     "ops@example.test", "\u00fc@example.com", "@example.com", "ops@",
                                     "ops@[127.0.0.1]", '"quoted"@example.com'])
def test_an_invalid_recipient_is_refused(api, address):
    error = refused_and_unchanged(api, "PUT", QUOTA_PATH, json.dumps({"limit_bytes": 1000, "notify": [address]}))
    assert "notify/0" in error["parameter"]


def test_an_invalid_recipient_in_a_rule_is_refused(api):
    body = {"rules": [{"pattern": "pay*", "limit_bytes": 1000, "notify": ["ok@example.com", "a@b@c"]}]}
    error = refused_and_unchanged(api, "PUT", RULES_PATH, json.dumps(body))
    assert "rules/0/notify/1" in error["parameter"]


def test_more_than_fifty_recipients_are_refused(api):
    body = {"limit_bytes": 1000, "notify": [f"owner{i}@example.com" for i in range(51)]}
    refused_and_unchanged(api, "PUT", QUOTA_PATH, json.dumps(body))


def test_recipients_are_stored_normalised_and_once(api):
    body = {"limit_bytes": 1000, "notify": ["Ops@Example.COM", "Ops@example.com", "billing@b\u00fccher.de"]}
    response = call(api, "PUT", "/v1/services/normalised/quota", json.dumps(body))
    assert response.status_code == 200
    assert call(api, "GET", "/v1/services/normalised/quota").json()["notify"] == [
        "Ops@example.com", "billing@xn--bcher-kva.de"]
    assert call(api, "DELETE", "/v1/services/normalised/quota").status_code == 204


# -- nesting, cursors, names -------------------------------------------------------------------
@pytest.mark.parametrize("body", ["[" * 60_000, '{"a":' * 12_000 + "1" + "}" * 12_000, "[" * 30_000 + "]" * 30_000,
                                  '{"limit_bytes": 1000, "notify": ' + "[" * 40 + "]" * 40 + "}"])
def test_a_deeply_nested_body_is_refused(api, body):
    refused_and_unchanged(api, "PUT", QUOTA_PATH, body, status=413 if len(body) > 65536 else 400)


def test_a_body_nested_sixty_thousand_levels_is_a_4xx_on_the_rules_too(api):
    refused_and_unchanged(api, "PUT", RULES_PATH, "[" * 60_000, parameter="body")


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize("cursor", [_cursor(b'{"o": 1e999}'), _cursor(b'{"o": -1}'), _cursor(b'{"o": 1.5}'),
                                    _cursor(b'{"o": true}'), _cursor(b'{"o": "1"}'), _cursor(b'{"o": NaN}'),
                                    _cursor(b'{"o": ' + b"9" * 400 + b"}"), _cursor(b"[" * 40), "garbage!!",
                                    "A" * 5000, _cursor(b"\xff\xfe")])
def test_a_forged_cursor_is_400(api, cursor):
    assert_refused(requests.get(f"{api.url}/v1/services", params={"cursor": cursor}, headers=READ, timeout=30),
                   parameter="cursor")


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/services/{s}"), ("GET", "/v1/services/{s}/bandwidth"), ("GET", "/v1/services/{s}/stats"),
    ("GET", "/v1/services/{s}/alerts"), ("GET", "/v1/services/{s}/quota"), ("PUT", "/v1/services/{s}/quota"),
    ("DELETE", "/v1/services/{s}/quota")])
def test_a_3000_character_service_name_is_400_on_every_service_route(api, method, path):
    body = json.dumps({"limit_bytes": 1000}) if method == "PUT" else None
    refused_and_unchanged(api, method, path.format(s=LONG_NAME), body, parameter="service")


def test_a_3000_character_service_name_is_400_on_the_older_frontends_endpoint(api):
    assert_refused(requests.get(f"{api.url}/metrics/bandwidth_used", params={"service": LONG_NAME}, headers=READ,
                                timeout=30), parameter="service")


@pytest.mark.parametrize("consumer", [LONG_NAME, "alice\nbob", "\x00", "\x7f", "", "alice\n"])
def test_a_consumer_name_too_long_or_with_control_characters_is_400(api, consumer):
    assert_refused(requests.get(f"{api.url}/v1/services/{SERVICE}/bandwidth", params={"consumer": consumer},
                                headers=READ, timeout=30), parameter="consumer")


def test_a_consumer_name_with_quotes_slashes_and_unicode_is_only_a_name(api):
    response = requests.get(f"{api.url}/v1/services/{SERVICE}/bandwidth", headers=READ, timeout=30,
                            params={"consumer": "o'brien/\"x\" <b>\u00e9 (ops)", "format": "csv"})
    assert response.status_code == 200 and response.text.splitlines()[0] == (
        "time,service,direction,route,consumer,bytes,partial")


# -- webhook URLs --------------------------------------------------------------------------------
INTERNAL_URLS = ["https://169.254.169.254/latest/meta-data/", "http://example.com/hook", "https://127.0.0.1/hook",
                 "https://127.1/hook", "https://2130706433/hook", "https://0x7f000001/hook",
                 "https://0177.0.0.1/hook", "https://10.0.0.8/hook", "https://172.16.5.4/hook",
                 "https://192.168.1.1/hook", "https://0.0.0.0/hook", "https://100.64.0.1/hook",
                 "https://localhost/hook", "https://hooks.localhost/hook", "https://[::1]/hook",
                 "https://[::ffff:169.254.169.254]/hook", "https://[fe80::1]/hook", "https://[fd00::1]/hook",
                 "ftp://example.com/hook", "https://user:pass@example.com/hook"]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_an_internal_or_plain_webhook_url_is_refused_outside_dev(api, url):
    error = refused_and_unchanged(api, "PUT", QUOTA_PATH, json.dumps({"limit_bytes": 1000, "webhook_url": url}))
    assert "webhook_url" in error["parameter"]


@pytest.mark.parametrize("url", INTERNAL_URLS[:3])
def test_an_internal_webhook_url_in_a_rule_is_refused_outside_dev(api, url):
    body = {"rules": [{"pattern": "pay*", "limit_bytes": 1000, "webhook_url": url}]}
    error = refused_and_unchanged(api, "PUT", RULES_PATH, json.dumps(body))
    assert "rules/0/webhook_url" in error["parameter"]


@pytest.fixture
def webhook_quota(api):
    url = "https://hooks.example.com/bandwidth?token=s3cret"
    rules = {"rules": [{"pattern": "pay*", "limit_bytes": 10**9, "webhook_url": url}]}
    assert call(api, "PUT", QUOTA_PATH, json.dumps({"limit_bytes": 10**9, "webhook_url": url})).status_code == 200
    assert call(api, "PUT", RULES_PATH, json.dumps(rules)).status_code == 200
    yield url
    assert call(api, "DELETE", QUOTA_PATH).status_code == 204
    assert call(api, "PUT", RULES_PATH, json.dumps({"rules": []})).status_code == 200


def test_a_public_https_webhook_is_shown_to_admin_keys(api, webhook_quota):
    assert call(api, "GET", QUOTA_PATH).json()["webhook_url"] == webhook_quota
    assert call(api, "GET", RULES_PATH).json()["rules"][0]["webhook_url"] == webhook_quota


@pytest.mark.parametrize("path", [QUOTA_PATH, "/v1/quotas", RULES_PATH, "/v1/services", f"/v1/services/{SERVICE}"])
def test_read_keys_never_see_a_webhook_url(api, webhook_quota, path):
    response = call(api, "GET", path, headers=READ)
    assert response.status_code == 200
    assert "hooks.example.com" not in response.text and "s3cret" not in response.text


def test_the_overview_says_only_whether_a_webhook_is_set(api, webhook_quota):
    assert call(api, "GET", f"/v1/services/{SERVICE}", headers=READ).json()["quota"]["webhook"] is True


# -- rule patterns ------------------------------------------------------------------------------
def test_a_catastrophic_regex_is_just_a_glob_and_cannot_hang_the_api(api):
    hostile = {"rules": [{"pattern": "(a+)+$", "limit_bytes": 1000}, {"pattern": "*a*a*a*a*a*a*a*a*a*a*b",
                                                                      "limit_bytes": 2000},
                         {"pattern": "payments-?pi", "limit_bytes": 3000}]}
    assert call(api, "PUT", RULES_PATH, json.dumps(hostile)).status_code == 200
    try:
        summary = requests.get(f"{api.url}/v1/services/{SERVICE}", headers=READ, timeout=5)
        assert summary.json()["quota"]["source"] == "rule:payments-?pi"
    finally:
        assert call(api, "PUT", RULES_PATH, json.dumps({"rules": []})).status_code == 200


@pytest.mark.parametrize("pattern", ["", "pay\n", "pay\x00*", "p" * 257])
def test_an_empty_overlong_or_control_character_pattern_is_refused(api, pattern):
    error = refused_and_unchanged(api, "PUT", RULES_PATH, json.dumps({"rules": [{"pattern": pattern,
                                                                                 "limit_bytes": 1}]}))
    assert "rules/0/pattern" in error["parameter"]
