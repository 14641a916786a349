"""Concurrent quota edits: every quota (and the rules) has a version, GET answers it as an ETag,
a PUT/DELETE naming a stale one in If-Match is 412 and changes nothing, and a change is stored
only if the version it read is still current, so the audit's "old" is what it replaced."""
import json

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.core import quota_book
from chalicelib.core.errors import BadRequest, PreconditionFailed
from chalicelib.core.models import QUOTA_PK, Quota

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(aws):
    from app import app

    with Client(app) as c:
        yield c


def put(client, path, body, **headers):
    return client.http.put(path, headers={**JSON, **headers}, body=json.dumps(body))


def audit(client):
    return [(e["action"], (e["old"] or {}).get("limit_bytes"), (e["new"] or {}).get("limit_bytes"))
            for e in json.loads(client.http.get("/v1/quota-audit").body)["entries"]]


def test_a_quota_answers_its_version_as_an_etag_that_each_change_moves_on(client):
    first = put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    assert first.status_code == 200 and first.headers["ETag"] == '"1"'
    read = client.http.get("/v1/services/pay/quota")
    assert read.headers["ETag"] == '"1"' and json.loads(read.body)["limit_bytes"] == 100
    second = put(client, "/v1/services/pay/quota", {"limit_bytes": 200}, **{"If-Match": '"1"'})
    assert second.status_code == 200 and second.headers["ETag"] == '"2"'


def test_a_put_naming_a_stale_version_is_412_naming_the_current_one_and_changes_nothing(client):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    etag_a = client.http.get("/v1/services/pay/quota").headers["ETag"]  # admin A reads
    etag_b = client.http.get("/v1/services/pay/quota").headers["ETag"]  # admin B reads
    assert put(client, "/v1/services/pay/quota", {"limit_bytes": 200}, **{"If-Match": etag_b}).status_code == 200
    stale = put(client, "/v1/services/pay/quota", {"limit_bytes": 300}, **{"If-Match": etag_a})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"2"'
    error = json.loads(stale.body)["error"]
    assert error["code"] == "precondition_failed" and error["current_version"] == '"2"'
    assert '"2"' in error["message"]
    assert json.loads(client.http.get("/v1/services/pay/quota").body)["limit_bytes"] == 200
    assert audit(client) == [("put", 100, 200), ("put", None, 100)]


def test_a_delete_naming_a_stale_version_is_412_and_keeps_the_quota(client):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    put(client, "/v1/services/pay/quota", {"limit_bytes": 200})
    stale = client.http.delete("/v1/services/pay/quota", headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.http.get("/v1/services/pay/quota").status_code == 200
    assert client.http.delete("/v1/services/pay/quota", headers={"If-Match": '"2"'}).status_code == 204
    assert audit(client) == [("delete", 200, None), ("put", 100, 200), ("put", None, 100)]


def test_if_match_on_a_quota_that_does_not_exist_is_412(client):
    response = put(client, "/v1/services/pay/quota", {"limit_bytes": 100}, **{"If-Match": '"1"'})
    assert response.status_code == 412 and json.loads(response.body)["error"]["current_version"] is None
    assert client.http.get("/v1/services/pay/quota").status_code == 404 and audit(client) == []


def test_an_empty_if_match_is_a_change_without_one(client):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    assert put(client, "/v1/services/pay/quota", {"limit_bytes": 200}, **{"If-Match": ""}).status_code == 200


def test_quota_rules_are_versioned_the_same_way(client):
    assert client.http.get("/v1/quota-rules").headers["ETag"] == '"0"'
    rules = {"rules": [{"pattern": "pa*", "limit_bytes": 1000}]}
    assert put(client, "/v1/quota-rules", rules, **{"If-Match": '"0"'}).headers["ETag"] == '"1"'
    stale = put(client, "/v1/quota-rules", {"rules": []}, **{"If-Match": '"0"'})
    assert stale.status_code == 412 and json.loads(stale.body)["error"]["current_version"] == '"1"'
    assert json.loads(client.http.get("/v1/quota-rules").body)["rules"][0]["pattern"] == "pa*"


def test_an_unconditional_put_that_loses_a_race_is_audited_against_the_winner(aws, monkeypatch):
    """Admin A (no If-Match) reads version 1; admin B's change lands before A's write. A's write
    must not overwrite B's silently with an audit saying it replaced version 1."""
    book = bootstrap.current().quotas
    book.put("pay", {"limit_bytes": 100})
    read = quota_book.QuotaBook._quota_item
    interleaved = []

    def read_then_b_writes(service):
        item = read(service)
        if not interleaved:
            interleaved.append(True)
            quota_book.QuotaBook().put("pay", {"limit_bytes": 200})  # B, between A's read and write
        return item
    monkeypatch.setattr(quota_book.QuotaBook, "_quota_item", staticmethod(read_then_b_writes))
    result = book.put_versioned("pay", {"limit_bytes": 300})
    assert result.version == 3
    entries = [(e["old"]["limit_bytes"] if e["old"] else None, e["new"]["limit_bytes"])
               for e in book.audit_log(newest_first=False)]
    assert entries == [(None, 100), (100, 200), (200, 300)]


def test_a_conditional_put_that_loses_a_race_is_refused_and_stores_nothing(aws, monkeypatch):
    book = bootstrap.current().quotas
    book.put("pay", {"limit_bytes": 100})
    read = quota_book.QuotaBook._quota_item
    calls = []

    def read_then_b_writes(service):
        item = read(service)
        if not calls:
            calls.append(True)
            quota_book.QuotaBook().put("pay", {"limit_bytes": 200})
        return item
    monkeypatch.setattr(quota_book.QuotaBook, "_quota_item", staticmethod(read_then_b_writes))
    with pytest.raises(PreconditionFailed) as refused:
        book.put("pay", {"limit_bytes": 300}, if_match='"1"')
    assert refused.value.current == '"2"'
    assert Quota.get(QUOTA_PK, "pay").body["limit_bytes"] == 200 and len(book.audit_log()) == 2


def test_a_transaction_conflict_is_a_lost_race_read_again_not_a_store_error(aws, monkeypatch):
    """DynamoDB cancels one of two transactions writing the same item at once (TransactionConflict):
    the change reads again and is applied, instead of answering 503."""
    from contextlib import contextmanager

    from pynamodb.connection.base import VerboseClientError
    from pynamodb.exceptions import CancellationReason, TransactWriteError

    book = bootstrap.current().quotas
    book.put("pay", {"limit_bytes": 100})
    real, conflicts = quota_book.transaction, []

    @contextmanager
    def conflict_once():
        if not conflicts:
            conflicts.append(True)
            cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}},
                                       "TransactWriteItems",
                                       cancellation_reasons=[CancellationReason(code="TransactionConflict")])
            raise TransactWriteError("cancelled", cause=cause)
        with real() as tx:
            yield tx
    monkeypatch.setattr(quota_book, "transaction", conflict_once)
    assert book.put_versioned("pay", {"limit_bytes": 300}, if_match='"1"').version == 2
    assert conflicts and Quota.get(QUOTA_PK, "pay").body["limit_bytes"] == 300


def test_a_quota_stored_before_versions_is_version_0_and_changed_conditionally(aws):
    book = bootstrap.current().quotas
    Quota(QUOTA_PK, "pay", body={"limit_bytes": 100}, updated_at=1.0).save()
    assert book.get_versioned("pay").etag == '"0"'
    with pytest.raises(PreconditionFailed):
        book.put("pay", {"limit_bytes": 300}, if_match='"5"')
    assert book.put_versioned("pay", {"limit_bytes": 300}, if_match='"0"').version == 1


def test_if_match_accepts_a_list_weak_tags_and_a_star():
    assert quota_book.etag_matches('"3"', 3) and quota_book.etag_matches('W/"3"', 3)
    assert quota_book.etag_matches('"1", "3"', 3) and quota_book.etag_matches("*", 3)
    assert not quota_book.etag_matches('"2"', 3) and not quota_book.etag_matches("*", None)
    with pytest.raises(BadRequest, match="If-Match"):  # not a tag at all: a bad request, not a stale version
        quota_book.etag_matches("garbage", 3)


@pytest.mark.parametrize("value", ["garbage", '"nan"', '"' + "9" * 400 + '"', "x" * 3000, '"1"; drop', "W/'1'"])
def test_an_if_match_that_is_no_entity_tag_is_a_400_and_changes_nothing(client, value):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    for answer in (put(client, "/v1/services/pay/quota", {"limit_bytes": 200}, **{"If-Match": value}),
                   client.http.delete("/v1/services/pay/quota", headers={"If-Match": value})):
        error = json.loads(answer.body)["error"]
        assert answer.status_code == 400 and error["parameter"] == "If-Match" and "ETag" in error["message"]
    assert json.loads(client.http.get("/v1/services/pay/quota").body)["limit_bytes"] == 100
    assert audit(client) == [("put", None, 100)]


@pytest.mark.parametrize("kind, path", [("service", "/v1/services/pay/quota"), ("consumer", "/v1/consumers/acme/quota")])
def test_an_etag_read_before_a_delete_never_matches_the_quota_stored_after_it(client, kind, path):
    """Admin A reads version 2; admin B deletes the quota and stores a new one, changed once:
    A's change naming "2" must not overwrite B's quota, as it would if versions began again at 1."""
    put(client, path, {"limit_bytes": 100})
    put(client, path, {"limit_bytes": 200})
    etag_a = client.http.get(path).headers["ETag"]
    assert etag_a == '"2"'
    assert client.http.delete(path).status_code == 204
    assert client.http.get(path).status_code == 404
    assert client.http.delete(path).status_code == 404  # deleted is absent, however it is stored
    assert put(client, path, {"limit_bytes": 300}, **{"If-Match": etag_a}).status_code == 412  # nothing stored
    assert put(client, path, {"limit_bytes": 300}, **{"If-Match": "*"}).status_code == 412
    fresh = put(client, path, {"limit_bytes": 300})
    assert fresh.status_code == 200 and fresh.headers["ETag"] == '"4"'
    assert put(client, path, {"limit_bytes": 400}, **{"If-Match": '"4"'}).headers["ETag"] == '"5"'
    stale = put(client, path, {"limit_bytes": 999}, **{"If-Match": etag_a})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"5"'
    assert json.loads(client.http.get(path).body)["limit_bytes"] == 400
    assert audit(client)[:3] == [("put", 300, 400), ("put", None, 300), ("delete", 200, None)]


def test_a_deleted_quota_applies_no_more_and_is_listed_nowhere(client):
    put(client, "/v1/services/pay/quota", {"limit_bytes": 100})
    put(client, "/v1/services/cdn/quota", {"limit_bytes": 500})
    assert client.http.delete("/v1/services/pay/quota").status_code == 204
    snapshot = bootstrap.current().quotas.load()
    assert set(snapshot.quotas) == {"cdn"}
    assert snapshot.quota_for("pay").limit_bytes is None and snapshot.quota_for("cdn").limit_bytes == 500
