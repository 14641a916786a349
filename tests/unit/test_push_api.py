"""The push API in-process (Chalice's test client, moto in-process): POST /v1/events answers per
event, counts once, feeds charts and period usage; imports count nothing until committed and once
after; the ingest role pushes and reads nothing."""
import json

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.core import imports as imports_module
from chalicelib.core.events import EVENT_TYPE
from chalicelib.core.timeutil import DAY, parse_time

NOW = parse_time("2026-12-04T12:30:20Z")
INGEST_KEY, READ_KEY, ADMIN_KEY = "ingest-key-0123456789", "read-key-0123456789", "admin-key-0123456789"
BATCH = "application/cloudevents-batch+json"


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def client(aws, config, clock):
    config.set(API_KEYS=f"{INGEST_KEY}:ingest,{READ_KEY}:read,{ADMIN_KEY}:admin", THROTTLE_ENABLED="false")
    config.start(clock=clock)
    from app import app

    with Client(app) as c:
        yield c


def event(i, nbytes=100, service="cdn", time="2026-12-04T12:10:30Z", source="/edge-logs", **data):
    return {"specversion": "1.0", "id": str(i), "source": source, "type": EVENT_TYPE, "time": time,
            "data": {"service": service, "direction": data.pop("direction", "egress"), "bytes": nbytes, **data}}


def send(client, method, path, body=None, key=INGEST_KEY, content_type="application/json"):
    headers = {"x-api-key": key, "Content-Type": content_type}
    payload = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    response = getattr(client.http, method)(path, body=payload, headers=headers)
    return response.status_code, json.loads(response.body) if response.body else None


def push(client, events, key=INGEST_KEY):
    return send(client, "post", "/v1/events", events, key, BATCH)


def chart(client, **params):
    query = "&".join(f"{k}={v}" for k, v in {"start": "2026-12-04T12:00:00Z", "end": "2026-12-04T12:30:00Z",
                                              "step": "1m", **params}.items())
    status, body = send(client, "get", f"/v1/services/cdn/bandwidth?{query}", key=READ_KEY)
    assert status == 200, body
    return body


def total(body, **match):
    return sum(s["total_bytes"] for s in body["series"] if all(s.get(k) == v for k, v in match.items()))


# -- events --------------------------------------------------------------------------------
def test_a_batch_answers_each_event_in_order_and_a_refusal_blocks_no_other(client):
    status, body = push(client, [event(1), event(2, nbytes=-5), event(1), event(3, time="2026-10-01T00:00:00Z")])
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["accepted", "refused", "duplicate", "refused"]
    assert (body["accepted"], body["duplicate"], body["refused"]) == (1, 1, 2)
    assert "data/bytes" in body["results"][1]["reason"] and "older than the 35 days" in body["results"][3]["reason"]
    assert body["results"][0] == {"index": 0, "id": "1", "source": "/edge-logs", "status": "accepted"}


def test_a_replayed_batch_counts_once(client):
    batch = [event(i, nbytes=10 * i) for i in range(1, 6)]
    assert push(client, batch)[1]["accepted"] == 5
    status, body = push(client, batch)
    assert status == 200 and (body["accepted"], body["duplicate"]) == (0, 5)
    assert total(chart(client)) == 150


def test_one_structured_event_is_counted(client):
    status, body = send(client, "post", "/v1/events", event(7, nbytes=42), content_type="application/cloudevents+json")
    assert status == 200 and body["results"][0]["status"] == "accepted"
    assert total(chart(client)) == 42


@pytest.mark.parametrize("content_type, body, status, text", [
    (BATCH, [event(i) for i in range(1001)], 413, "at most 1000 events"),
    (BATCH, event(1), 400, "JSON array"),
    ("application/json", [event(1)], 400, "cloudevents-batch+json"),
    (BATCH, [], 400, "no event"),
    (BATCH, "{not json", 400, "not valid JSON"),
])
def test_a_request_not_acceptable_as_a_whole_is_refused_and_counts_nothing(client, content_type, body, status, text):
    got, answer = send(client, "post", "/v1/events", body, content_type=content_type)
    assert got == status and text in answer["error"]["message"]
    assert bootstrap.current().store.get_service("cdn") is None


def test_charts_show_the_sum_and_split_by_source(client, clock):
    push(client, [event(1, nbytes=300, route="/video"), event(2, nbytes=20, direction="ingress")])
    merged = chart(client)
    assert total(merged, direction="egress") == 300 and total(merged, direction="ingress") == 20
    point = [p for s in merged["series"] if s["direction"] == "egress" for p in s["points"]
             if p["time"] == "2026-12-04T12:10:00Z"]
    assert point == [{"time": "2026-12-04T12:10:00Z", "bytes": 300, "partial": True}]  # nothing scraped there
    split = chart(client, split="source")
    assert [(s["source"], s["direction"]) for s in split["series"]] == [
        ("scraped", "ingress"), ("scraped", "egress"), ("pushed", "ingress"), ("pushed", "egress")]
    assert total(split, source="pushed") == 320 and total(split, source="scraped") == 0
    assert total(chart(client, route="/video")) == 300
    assert total(chart(client, consumer="(anonymous)")) == 320


def test_the_service_overview_counts_pushed_bytes_in_the_period(client):
    push(client, [event(1, nbytes=300), event(2, nbytes=5, time="2026-11-30T23:00:00Z")])
    status, body = send(client, "get", "/v1/services/cdn", key=READ_KEY)
    assert status == 200
    assert json.dumps(body).count('"total": 300') >= 1, body


# -- keys ----------------------------------------------------------------------------------
def test_an_ingest_key_pushes_and_reads_nothing(client):
    assert push(client, [event(1)])[0] == 200
    for path in ("/v1/services", "/v1/services/cdn/bandwidth", "/v1/imports?status=running", "/v1/quotas"):
        status, body = send(client, "get", path, key=INGEST_KEY)
        assert (status, body["error"]["code"]) == (403, "forbidden"), path
    assert send(client, "put", "/v1/services/cdn/quota", {"limit_bytes": 5}, key=INGEST_KEY)[0] == 403


def test_a_read_key_cannot_push_and_an_admin_key_can(client):
    status, body = push(client, [event(1)], key=READ_KEY)
    assert status == 403 and "ingest role" in body["error"]["message"]
    assert send(client, "post", "/v1/imports", key=READ_KEY)[0] == 403
    assert push(client, [event(1)], key=ADMIN_KEY)[1]["accepted"] == 1


# -- imports -------------------------------------------------------------------------------
def register(client):
    status, body = send(client, "post", "/v1/imports", {"description": "backfill November"})
    assert status == 201 and body["status"] == "open"
    return body["id"]


def put_batch(client, import_id, number, events, key=INGEST_KEY):
    return send(client, "put", f"/v1/imports/{import_id}/batches/{number}", events, key, BATCH)


def commit(client, import_id):
    return send(client, "post", f"/v1/imports/{import_id}/commit")


def test_an_import_counts_nothing_until_committed_and_once_after(client):
    import_id = register(client)
    status, body = put_batch(client, import_id, 0, [event(i, nbytes=100) for i in range(3)] + [event(9, nbytes=-1)])
    assert status == 200 and (body["staged"], body["refused"]) == (3, 1)
    assert put_batch(client, import_id, 1, [event(10 + i, nbytes=1) for i in range(4)])[0] == 200
    assert put_batch(client, import_id, 1, [event(10 + i, nbytes=1) for i in range(4)])[0] == 200  # sent again
    assert bootstrap.current().store.get_service("cdn") is None  # invisible
    status, body = commit(client, import_id)
    assert status == 200 and body["status"] == "committed" and body["result"] == {"accepted": 7, "duplicate": 0}
    assert total(chart(client)) == 304
    status, again = commit(client, import_id)
    assert status == 200 and again["result"] == body["result"]
    assert total(chart(client)) == 304
    assert put_batch(client, import_id, 2, [event(99)])[0] == 409


def test_an_imported_event_already_pushed_is_a_duplicate(client):
    push(client, [event(1, nbytes=100)])
    import_id = register(client)
    put_batch(client, import_id, 0, [event(1, nbytes=100), event(2, nbytes=1)])
    assert commit(client, import_id)[1]["result"] == {"accepted": 1, "duplicate": 1}
    assert total(chart(client)) == 101


def test_a_large_commit_resumes_where_it_stopped_and_counts_once(client, monkeypatch):
    import_id = register(client)
    for n in range(3):
        put_batch(client, import_id, n, [event(100 * n + i, nbytes=n + 1) for i in range(2)])
    monkeypatch.setattr(imports_module.ImportBook, "commit",
                        lambda self, i, now, budget_seconds=20.0, real=imports_module.ImportBook.commit:
                        real(self, i, now, budget_seconds=-1))  # one batch per call
    statuses = []
    for _ in range(4):
        status, body = commit(client, import_id)
        statuses.append((status, body["status"], body["batches_applied"]))
    assert statuses == [(202, "committing", 1), (202, "committing", 2), (200, "committed", 3), (200, "committed", 3)]
    assert total(chart(client)) == 2 * 1 + 2 * 2 + 2 * 3


def test_running_lists_open_imports_and_an_expired_one_counts_nothing(client, clock):
    first, second = register(client), register(client)
    put_batch(client, first, 0, [event(1)])
    commit(client, second)
    status, body = send(client, "get", "/v1/imports?status=running", key=READ_KEY)
    assert status == 200 and [i["id"] for i in body["imports"]] == [first]
    clock.now = NOW + imports_module.OPEN_DAYS * DAY + 1
    assert send(client, "get", "/v1/imports?status=running", key=READ_KEY)[1]["imports"] == []
    status, body = commit(client, first)
    assert status == 404 and "expires" in body["error"]["message"]
    assert bootstrap.current().store.get_service("cdn") is None


def test_a_batch_number_must_be_a_small_integer(client):
    import_id = register(client)
    for number in ("x1", "1234567", "%D9%A1"):  # the last: an Arabic-Indic one, a digit to str.isdigit
        status, body = put_batch(client, import_id, number, [event(1)])
        assert status == 400 and body["error"]["parameter"] == "number", number
    assert put_batch(client, "nosuchimport", 0, [event(1)])[0] == 404


def test_a_commit_started_before_the_import_would_expire_is_finished_after(client, clock, monkeypatch):
    import_id = register(client)
    for n in range(2):
        put_batch(client, import_id, n, [event(10 * n + i, nbytes=5) for i in range(2)])
    monkeypatch.setattr(imports_module.ImportBook, "commit",
                        lambda self, i, now, budget_seconds=20.0, real=imports_module.ImportBook.commit:
                        real(self, i, now, budget_seconds=-1))
    clock.now = NOW + imports_module.OPEN_DAYS * DAY - 60
    assert commit(client, import_id)[1]["status"] == "committing"
    clock.now = NOW + imports_module.OPEN_DAYS * DAY + 3600  # the open import would have expired by now
    status, body = commit(client, import_id)
    assert (status, body["status"], body["result"]) == (200, "committed", {"accepted": 4, "duplicate": 0})


def test_a_chart_split_by_source_as_csv_has_a_source_column(client):
    push(client, [event(1, nbytes=300)])
    response = client.http.get("/v1/services/cdn/bandwidth?start=2026-12-04T12:10:00Z&end=2026-12-04T12:12:00Z"
                               "&step=1m&direction=egress&split=source&format=csv", headers={"x-api-key": READ_KEY})
    lines = response.body.decode().splitlines()
    assert lines[0] == "time,service,direction,route,source,bytes,partial"
    assert "2026-12-04T12:10:00Z,cdn,egress,,pushed,300,false" in lines
    assert "2026-12-04T12:10:00Z,cdn,egress,,scraped,,false" in lines  # nothing collected there


@pytest.mark.parametrize("body, text", [
    ('[{"specversion": "1.0", "data": {"bytes": NaN}}]', "NaN"),
    ('[{"data": {"bytes": 9007199254740993}}]', "beyond"),
    ("[" * 40 + "]" * 40, "nested"),
    ('["\\ud800"]', "not valid JSON"),
])
def test_hostile_bodies_are_400_and_count_nothing(client, body, text):
    status, answer = send(client, "post", "/v1/events", body, content_type=BATCH)
    assert status == 400 and text in answer["error"]["message"], answer


def test_hostile_events_are_refused_alone(client):
    status, body = push(client, [event(1, service="s" * 3000), event(2, route="r\n"), {**event(3), "id": ""},
                                 {**event(4), "data": {"service": "cdn", "direction": "egress", "bytes": 1, "x": 1}},
                                 {**event(5), "time": "9" * 30}, event(6, nbytes=9)])
    assert status == 200 and [r["status"] for r in body["results"]] == ["refused"] * 5 + ["accepted"]
    assert total(chart(client)) == 9
