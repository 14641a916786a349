"""A consumer's own quota (/v1/consumers/{c}/quota) and quota rules for consumers, through the
in-process API on moto: the same body, versions, audit and input rules as a service's, kept apart
from a service of the same name."""
import itertools
import json

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMERS_PK, ConsumerUsage
from chalicelib.core.quotas import QuotaSnapshot

T0 = 1_796_083_200  # 2026-12-01T00:00Z
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(aws, config):
    from app import app

    ticks = itertools.count()  # a clock that moves a millisecond per reading (the audit orders by it)
    config.start(clock=lambda: T0 + 3600 + next(ticks) / 1000)
    with Client(app) as c:
        yield c


def seen(consumer: str, total: int = 0) -> None:
    """A consumer the collector has counted (its usage item, as the collector writes it)."""
    ConsumerUsage(CONSUMERS_PK, consumer, consumer=consumer, first_seen=T0, last_active=T0, through=T0 + 60,
                  period_kind="month", period_anchor=1, period_start=T0, period_end=T0 + 31 * 86400,
                  ingress=0, egress=total, total=total, services={"pay": {"ingress": 0, "egress": total}}).save()


def put(client, path, body, **headers):
    response = client.http.put(path, headers={**JSON, **headers}, body=json.dumps(body))
    return response.status_code, (json.loads(response.body) if response.body else None), response.headers


def get(client, path, **headers):
    response = client.http.get(path, headers=headers)
    return response.status_code, (json.loads(response.body) if response.body else None), response.headers


def test_a_consumer_quota_is_stored_read_and_deleted_with_its_version(client):
    seen("alice")
    status, body, headers = put(client, "/v1/consumers/alice/quota", {"limit_bytes": 5000, "action": "reject"})
    assert status == 200 and headers["ETag"] == '"1"'
    assert body == {"limit_bytes": 5000, "period": "month", "anchor_day": 1, "direction": "total",
                    "thresholds": [80, 90, 100], "notify": [], "action": "reject", "reject_at": 100}
    status, body, headers = get(client, "/v1/consumers/alice/quota")
    assert status == 200 and body["limit_bytes"] == 5000 and headers["ETag"] == '"1"'
    assert client.http.delete("/v1/consumers/alice/quota", headers={"If-Match": '"1"'}).status_code == 204
    assert get(client, "/v1/consumers/alice/quota")[0] == 404


def test_a_stale_if_match_is_412_and_keeps_the_stored_quota(client):
    seen("alice")
    put(client, "/v1/consumers/alice/quota", {"limit_bytes": 5000})
    put(client, "/v1/consumers/alice/quota", {"limit_bytes": 6000}, **{"If-Match": '"1"'})
    status, body, headers = put(client, "/v1/consumers/alice/quota", {"limit_bytes": 7000}, **{"If-Match": '"1"'})
    assert status == 412 and headers["ETag"] == '"2"'
    assert "consumer 'alice'" in body["error"]["message"]
    assert get(client, "/v1/consumers/alice/quota")[1]["limit_bytes"] == 6000


def test_a_service_and_a_consumer_of_the_same_name_never_share_a_quota(client):
    seen("pay")
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    put(client, "/v1/consumers/pay/quota", {"limit_bytes": 999})
    assert get(client, "/v1/services/pay/quota")[1]["limit_bytes"] == 100
    assert get(client, "/v1/consumers/pay/quota")[1]["limit_bytes"] == 999
    client.http.delete("/v1/consumers/pay/quota")
    assert get(client, "/v1/services/pay/quota")[1]["limit_bytes"] == 100
    snapshot = bootstrap.current().quotas.load()
    assert snapshot.quotas == {"pay": get(client, "/v1/services/pay/quota")[1]} and snapshot.consumer_quotas == {}


def test_consumer_quota_changes_are_audited_under_a_key_that_says_consumer(client):
    seen("alice")
    put(client, "/v1/consumers/alice/quota", {"limit_bytes": 100})
    put(client, "/v1/services/alice/quota", {"limit_bytes": 200})
    client.http.delete("/v1/consumers/alice/quota")
    entries = get(client, "/v1/quota-audit")[1]["entries"]
    assert [(e["key"], e["action"]) for e in entries] == [
        ("consumer-quota/alice", "delete"), ("quota/alice", "put"), ("consumer-quota/alice", "put")]


def test_a_workspace_qualified_consumer_is_addressed_url_encoded(client):
    seen("eu:alice")
    status, body, _ = put(client, "/v1/consumers/eu%3Aalice/quota", {"limit_bytes": 100})
    assert status == 200 and "warnings" not in body
    assert bootstrap.current().quotas.load().consumer_quotas["eu:alice"]["limit_bytes"] == 100
    assert get(client, "/v1/consumers/alice/quota")[0] == 404  # the default workspace's alice is another consumer


def test_a_quota_for_a_consumer_never_seen_is_stored_with_a_warning_naming_the_closest(client):
    seen("alice")
    status, body, _ = put(client, "/v1/consumers/alcie/quota", {"limit_bytes": 100})
    assert status == 200 and body["warnings"] == ["consumer 'alcie' has not been seen; did you mean 'alice'?"]
    assert get(client, "/v1/consumers/alcie/quota")[1]["limit_bytes"] == 100
    far = put(client, "/v1/consumers/zzz-new/quota", {"limit_bytes": 100})[1]
    assert far["warnings"] == ["consumer 'zzz-new' has not been seen; the quota applies once it carries traffic"]


@pytest.mark.parametrize("path", ["/v1/consumers/%28anonymous%29/quota", "/v1/consumers/%28other%20consumers%29/quota",
                                  "/v1/consumers/bad%0Aname/quota"])
def test_anonymous_traffic_and_control_characters_cannot_have_a_quota(client, path):
    status, body, _ = put(client, path, {"limit_bytes": 100})
    assert status == 400 and body["error"]["parameter"] == "consumer"
    assert bootstrap.current().quotas.load().consumer_quotas == {}
    assert get(client, "/v1/quota-audit")[1]["entries"] == []


def test_an_invalid_consumer_quota_is_400_naming_each_field_and_stores_nothing(client):
    status, body, _ = put(client, "/v1/consumers/alice/quota",
                          {"limit_bytes": -1, "notify": ["not-an-email"], "webhook_url": "ftp://hooks.example.com/x"})
    assert status == 400
    assert {d["field"] for d in body["error"]["details"]} == {"limit_bytes", "notify/0", "webhook_url"}
    assert get(client, "/v1/consumers/alice/quota")[0] == 404


def test_malformed_json_for_a_consumer_quota_is_400(client):
    response = client.http.put("/v1/consumers/alice/quota", headers=JSON, body="{not json")
    assert response.status_code == 400 and json.loads(response.body)["error"]["parameter"] == "body"


def test_the_quotas_listing_shows_consumer_quotas_apart(client):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    put(client, "/v1/consumers/alice/quota", {"limit_bytes": 200, "webhook_url": "https://hooks.example.com/x"})
    body = get(client, "/v1/quotas")[1]
    assert [q["service"] for q in body["quotas"]] == ["pay"]
    assert [(q["consumer"], q["limit_bytes"]) for q in body["consumer_quotas"]] == [("alice", 200)]


def test_rules_apply_to_services_unless_they_say_consumer(client):
    rules = {"rules": [{"pattern": "a*", "limit_bytes": 1000, "applies_to": "consumer"},
                       {"pattern": "a*", "limit_bytes": 50}]}
    status, body, _ = put(client, "/v1/quota-rules", rules)
    assert status == 200 and body["rules"][0]["applies_to"] == "consumer" and "applies_to" not in body["rules"][1]
    snapshot = bootstrap.current().quotas.load()
    assert (snapshot.quota_for_consumer("alice").source, snapshot.quota_for_consumer("alice").limit_bytes) == \
        ("rule:a*", 1000)
    assert (snapshot.quota_for("api").source, snapshot.quota_for("api").limit_bytes) == ("rule:a*", 50)
    bad = put(client, "/v1/quota-rules", {"rules": [{"pattern": "a*", "limit_bytes": 1, "applies_to": "route"}]})
    assert bad[0] == 400 and bad[1]["error"]["parameter"] == "rules/0/applies_to"


def test_a_consumers_own_quota_wins_over_a_rule_and_anonymous_never_has_one():
    snapshot = QuotaSnapshot(rules=[{"pattern": "*", "limit_bytes": 10, "period": "month", "direction": "total",
                                     "thresholds": [100], "applies_to": "consumer"}],
                             consumer_quotas={"bob": {"limit_bytes": 99, "period": "day", "direction": "egress",
                                                      "thresholds": [50]}})
    assert snapshot.quota_for_consumer("bob").source == "consumer" and snapshot.quota_for_consumer("bob").limit_bytes == 99
    assert snapshot.quota_for_consumer("carol").source == "rule:*"
    assert snapshot.quota_for_consumer("(anonymous)").limit_bytes is None
    assert snapshot.quota_for("carol").limit_bytes is None  # a consumer rule never governs a service


def test_rejecting_consumers_names_own_reject_quotas_until_a_consumer_rule_rejects():
    reject = {"limit_bytes": 10, "period": "month", "direction": "total", "thresholds": [100], "action": "reject"}
    snapshot = QuotaSnapshot(quotas={"svc": reject}, consumer_quotas={"bob": reject, "eve": {**reject, "action": "warn"}})
    assert snapshot.rejecting_consumers() == {"bob"} and snapshot.rejecting_services() == {"svc"}
    snapshot.rules = [{**reject, "pattern": "*", "applies_to": "consumer"}]
    assert snapshot.rejecting_consumers() is None and snapshot.rejecting_services() == {"svc"}
