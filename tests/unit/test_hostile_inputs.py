"""The checks behind 'inputs that cannot break anything', one behaviour each (pure logic).
Over real HTTP: tests/integration/test_hostile_http.py and tests/e2e/test_property_http.py."""
import base64
import ipaddress
import time

import pytest

from chalicelib.api.http import MAX_SAFE_INTEGER, PayloadTooLarge, integer, json_body, nesting_depth
from chalicelib.api.overview import _cursor, _offset
from chalicelib.core.errors import BadRequest
from chalicelib.core.quotas import (QuotaSnapshot, email_address, is_service_name, matches, normalize_quota,
                                    normalize_rules, without_webhook)
from chalicelib.core.settings import ConfigError
from chalicelib.core.webhook_targets import DEV, STRICT, UnsafeWebhookTarget, WebhookTargetPolicy, literal_address
from tests.support.config import build_settings


# -- strict JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'[Infinity]', b'[-Infinity]', b'[1e999]', b'[-1e999]',
                                 b'[' + b'9' * 17 + b']', b'[' + b'9' * 5000 + b']', b'"\\ud800"', b'\xff'])
def test_json_that_python_accepts_but_clients_cannot_hold_is_refused(raw):
    with pytest.raises(BadRequest) as refused:
        json_body(raw)
    assert refused.value.parameter == "body"


def test_the_largest_safe_integers_and_ordinary_floats_pass():
    assert json_body(b'[9007199254740991, -9007199254740991, 1.5e300, 0.1]') == [
        MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 1.5e300, 0.1]


def test_one_past_the_safe_integers_is_refused():
    with pytest.raises(BadRequest, match="beyond"):
        json_body(b'[9007199254740992]')


def test_nesting_is_measured_outside_strings():
    assert nesting_depth(b'{"a": "[[[[\\"{{{{", "b": [[1]]}') == 3


def test_sixty_thousand_levels_are_refused_before_parsing():
    with pytest.raises(BadRequest, match="nested"):
        json_body(b"[" * 60_000)


def test_a_body_over_64_kib_is_too_large():
    with pytest.raises(PayloadTooLarge):
        json_body(b"[" + b"1," * 40_000 + b"1]")


@pytest.mark.parametrize("raw", ["9" * 400, "1e3", "1_000", "\u0661\u0660", " 10", "10 ", "+10", "0x10", ""])
def test_an_integer_parameter_is_plain_ascii_digits(raw):
    with pytest.raises(BadRequest) as refused:
        integer({"limit": raw}, "limit", 100, 1, 1000)
    assert refused.value.parameter == "limit"


def test_an_integer_parameter_in_bounds_is_read():
    assert integer({"limit": "250"}, "limit", 100, 1, 1000) == 250 and integer({}, "limit", 100, 1, 1000) == 100


# -- cursors ----------------------------------------------------------------------------------------
def test_a_cursor_of_ours_round_trips():
    assert _offset(_cursor(300)) == 300 and _offset(None) == 0


@pytest.mark.parametrize("payload", [b'{"o": 1e999}', b'{"o": NaN}', b'{"o": -1}', b'{"o": 1.0}', b'{"o": false}',
                                     b'{"o": 10000000000}', b'{"p": 1}', b'[1]', b'\xff'])
def test_a_forged_cursor_is_a_bad_request(payload):
    with pytest.raises(BadRequest):
        _offset(base64.urlsafe_b64encode(payload).decode())


# -- recipients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["a@b@c", "ops@example.com\r\n", "ops@example.com\nBcc: x@example.com",
                                     "Ops <ops@example.com>", "ops@localhost", "\u00fc@example.com"])
def test_an_address_the_library_refuses_is_refused(address):
    with pytest.raises(BadRequest) as refused:
        normalize_quota({"limit_bytes": 1, "notify": [address]})
    assert refused.value.parameter == "notify/0"


def test_recipients_are_normalised_and_deduplicated():
    quota = normalize_quota({"limit_bytes": 1, "notify": ["Ops@EXAMPLE.com", "Ops@example.com", "a@b\u00fccher.de"]})
    assert quota["notify"] == ["Ops@example.com", "a@xn--bcher-kva.de"]
    assert email_address("x@Example.Org") == "x@example.org"


# -- numbers in quotas ----------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [({"limit_bytes": 2**53}, "limit_bytes"),
                                         ({"limit_bytes": 1, "thresholds": [1e-300]}, "thresholds/0"),
                                         ({"limit_bytes": 1, "anchor_day": 10**12}, "anchor_day")])
def test_quota_numbers_are_bounded(body, field):
    with pytest.raises(BadRequest) as refused:
        normalize_quota(body)
    assert field in refused.value.parameter


# -- webhook targets ------------------------------------------------------------------------------
@pytest.mark.parametrize("host, address", [("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
                                           ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
                                           ("[::ffff:a9fe:a9fe]", "::ffff:169.254.169.254"),
                                           ("169.254.169.254.", "169.254.169.254"), ("hooks.example.com", None),
                                           ("deadbeef.example", None)])
def test_literal_addresses_are_read_in_every_spelling(host, address):
    assert literal_address(host) == (ipaddress.ip_address(address) if address else None)


@pytest.mark.parametrize("url", ["https://169.254.169.254/", "https://2130706433/", "https://[::ffff:a9fe:a9fe]/",
                                 "https://[fe80::1]/", "https://[fc00::1]/", "https://172.31.0.1/",
                                 "https://192.168.0.1/", "https://0.0.0.0/", "https://[::]/", "https://localhost/",
                                 "http://hooks.example.com/", "https://[2002:7f00:1::]/"])
def test_a_strict_stage_refuses_internal_or_plain_urls(url):
    with pytest.raises(UnsafeWebhookTarget):
        STRICT.check_url(url)


def test_a_strict_stage_accepts_a_public_https_url_and_dev_accepts_loopback():
    STRICT.check_url("https://hooks.example.com/x?token=1")
    STRICT.check_url("https://93.184.215.14/x")
    DEV.check_url("http://127.0.0.1:8080/hook")


def test_an_operator_allowed_network_may_be_reached_over_plain_http_by_address():
    policy = WebhookTargetPolicy(strict=True, allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    policy.check_url("http://10.1.2.3/hook")
    with pytest.raises(UnsafeWebhookTarget):
        policy.check_url("http://10.2.0.1/hook")


def test_the_stored_webhook_is_checked_by_the_books_policy():
    with pytest.raises(BadRequest) as refused:
        normalize_quota({"limit_bytes": 1, "webhook_url": "https://169.254.169.254/"}, STRICT)
    assert refused.value.parameter == "webhook_url"
    assert normalize_quota({"limit_bytes": 1, "webhook_url": "http://127.0.0.1:9/h"}, DEV)["webhook_url"]


def test_webhook_allowed_networks_must_be_cidrs():
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOWED_NETWORKS"):
        build_settings(WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/8, nonsense")


def test_read_keys_get_quotas_without_the_webhook():
    assert without_webhook({"limit_bytes": 1, "webhook_url": "https://x.example/"}) == {"limit_bytes": 1}


# -- rule patterns and names ---------------------------------------------------------------------
def test_rule_patterns_are_globs_on_the_whole_name():
    assert matches("pay*", "payments") and matches("*-api", "search-api") and matches("svc-?", "svc-1")
    assert not matches("pay", "payments") and not matches("pay.*", "payments")


def test_a_pattern_that_would_hang_a_regex_matches_at_once():
    started = time.perf_counter()
    assert not matches("(a+)+$", "a" * 200 + "!")
    assert not matches("*a" * 100 + "b", "a" * 200)
    assert time.perf_counter() - started < 0.5


def test_the_first_matching_rule_applies():
    rules = normalize_rules({"rules": [{"pattern": "pay*", "limit_bytes": 10}, {"pattern": "*", "limit_bytes": 20}]})
    snapshot = QuotaSnapshot({}, rules)
    assert snapshot.quota_for("payments").limit_bytes == 10 and snapshot.quota_for("search").limit_bytes == 20


@pytest.mark.parametrize("name", ["pay\n", "s" * 201, "", "a\x00b"])
def test_service_names_are_bounded_and_free_of_control_characters(name):
    assert not is_service_name(name)


@pytest.mark.parametrize("name", ["alice\n", "c" * 1001, "", "a\x00b", "a\x7fb", "\t"])
def test_consumer_names_are_bounded_and_free_of_control_characters(name):
    from chalicelib.api.charts import consumer_name
    with pytest.raises(BadRequest) as refused:
        consumer_name(name)
    assert refused.value.parameter == "consumer"


def test_a_consumer_name_of_any_other_characters_is_taken_as_it_is():
    from chalicelib.api.charts import consumer_name
    for name in ("(anonymous)", "o'brien \"ops\" /x\u00e9", "c" * 1000, "\u2028"):
        assert consumer_name(name) == name


# -- what read keys see ------------------------------------------------------------------------------
READ_KEY, ADMIN_KEY = "read-key-hostile", "admin-key-hostile"


@pytest.fixture
def keyed_app(aws, config):
    from chalice.test import Client


    config.set(API_KEYS=f"{READ_KEY}:read,{ADMIN_KEY}:admin")
    config.start()
    from app import app

    with Client(app) as client:
        yield client.http


def test_read_keys_see_that_an_alert_failed_but_not_the_error_text(keyed_app):
    import json

    from chalicelib.core.models import Alert

    error = "webhook https://hooks.example.com/x?token=s3cret answered HTTP 500"
    Alert.record("pay", 1_800_000_000, 80.0, period_end=1_800_086_400, status="failed", usage_bytes=800,
                 limit_bytes=1000, recipients=["ops@example.com"], crossed_at=1_800_000_060,
                 claimed_at=1_800_000_060, error=error).save()
    as_read = json.loads(keyed_app.get("/v1/services/pay/alerts", headers={"x-api-key": READ_KEY}).body)
    as_admin = json.loads(keyed_app.get("/v1/services/pay/alerts", headers={"x-api-key": ADMIN_KEY}).body)
    assert as_read["alerts"][0]["status"] == "failed" and "s3cret" not in json.dumps(as_read)
    assert as_admin["alerts"][0]["error"] == error
