"""The push API over real HTTP (`chalice local` on a moto server): replayed events and batches
count once, pushed bytes add to scraped ones in charts and the period usage, an import is invisible
until committed and counted once after, and the ingest key pushes and reads nothing.

The server's clock is the wall clock, so every time here is taken from it."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.keyed_api import keyed_api, seed_usage

INGEST, READ, ADMIN = "ingest-http-key-0123", "read-http-key-0123", "admin-http-key-0123"
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    env = {"API_KEYS": f"{INGEST}:ingest,{READ}:read,{ADMIN}:admin", "THROTTLE_ENABLED": "false", "STAGE": "dev"}
    with keyed_api(tmp_path_factory.mktemp("push"), env) as running:
        running.end = seed_usage("media", minutes=20)  # 1000 B egress, 10 B ingress a minute, scraped
        yield running


def iso(at):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def event(event_id, at, nbytes, service="media", source="/cdn-logs"):
    return {"specversion": "1.0", "id": event_id, "source": source, "type": "dev.bandwidth-meter.usage",
            "time": iso(at), "data": {"service": service, "direction": "egress", "bytes": nbytes}}


def call(api, method, path, key, body=None, headers=None):
    data = None if body is None else json.dumps(body)
    headers = {"x-api-key": key, "Content-Type": "application/json", **(headers or {})}
    return requests.request(method, f"{api.url}{path}", data=data, headers=headers, timeout=30)


def egress(api, service, start, end, **params):
    query = "&".join(f"{k}={v}" for k, v in {"start": start, "end": end, "step": "1m", "direction": "egress",
                                              **params}.items())
    response = call(api, "GET", f"/v1/services/{service}/bandwidth?{query}", READ)
    assert response.status_code == 200, response.text
    return response.json()


def total(chart, **match):
    return sum(s["total_bytes"] for s in chart["series"] if all(s.get(k) == v for k, v in match.items()))


def test_replayed_events_and_batches_count_once_and_add_to_scraped_bytes(api):
    minute = api.end - 600 + 5  # inside the scraped range
    batch = [event(f"r{i}", minute, 100 + i) for i in range(5)]
    first = call(api, "POST", "/v1/events", INGEST, batch, BATCH)
    assert first.status_code == 200 and first.json()["accepted"] == 5
    # The same batch again, three times at once, and a batch that overlaps it
    with ThreadPoolExecutor(3) as pool:
        replays = list(pool.map(lambda _: call(api, "POST", "/v1/events", INGEST, batch, BATCH), range(3)))
    assert [r.json()["duplicate"] for r in replays] == [5, 5, 5]
    overlap = call(api, "POST", "/v1/events", INGEST, batch[3:] + [event("r9", minute, 1)], BATCH).json()
    assert [r["status"] for r in overlap["results"]] == ["duplicate", "duplicate", "accepted"]
    chart = egress(api, "media", api.end - 1200, api.end, split="source")
    pushed = sum(100 + i for i in range(5)) + 1
    assert total(chart, source="pushed") == pushed and total(chart, source="scraped") == 20 * 1000
    assert total(egress(api, "media", api.end - 1200, api.end)) == 20 * 1000 + pushed
    summary = call(api, "GET", "/v1/services/media", READ).json()
    assert summary["usage"]["egress"] == 20 * 1000 + pushed


def test_a_bad_event_is_refused_alone_and_a_late_one_lands_in_its_own_minute(api):
    late = int(time.time()) - 3 * 86400
    body = [event("late-1", late, 77, service="late-svc"), {**event("bad", late, 1, service="late-svc"), "specversion": "2"},
            event("old", time.time() - 40 * 86400, 5, service="late-svc")]
    answer = call(api, "POST", "/v1/events", INGEST, body, BATCH).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "refused", "refused"]
    assert "older than the 35 days" in answer["results"][2]["reason"]
    chart = egress(api, "late-svc", late // 60 * 60 - 120, late // 60 * 60 + 180)
    [points] = [s["points"] for s in chart["series"]]
    assert [p["bytes"] for p in points if p["bytes"]] == [77] and \
        [p["time"] for p in points if p["bytes"]] == [iso(late // 60 * 60)]


def test_an_import_is_invisible_until_committed_and_counted_once_after(api):
    at = int(time.time()) - 2 * 86400
    window = (at // 60 * 60 - 60, at // 60 * 60 + 120)
    registered = call(api, "POST", "/v1/imports", INGEST, {"description": "backfill"})
    assert registered.status_code == 201
    import_id = registered.json()["id"]
    for n in range(3):
        batch = [event(f"imp-{n}-{i}", at, 10, service="imported") for i in range(4)]
        assert call(api, "PUT", f"/v1/imports/{import_id}/batches/{n}", INGEST, batch, BATCH).json()["staged"] == 4
    # Batch 1 sent again: the same place, the same events
    call(api, "PUT", f"/v1/imports/{import_id}/batches/1", INGEST,
         [event(f"imp-1-{i}", at, 10, service="imported") for i in range(4)], BATCH)
    running = call(api, "GET", "/v1/imports?status=running", READ).json()["imports"]
    assert [(i["id"], i["status"], i["batches"]) for i in running] == [(import_id, "open", 3)]
    assert call(api, "GET", "/v1/services/imported", READ).status_code == 404  # nothing counts yet
    committed = call(api, "POST", f"/v1/imports/{import_id}/commit", INGEST)
    assert committed.status_code == 200 and committed.json()["result"] == {"accepted": 12, "duplicate": 0}
    assert total(egress(api, "imported", *window)) == 120
    again = call(api, "POST", f"/v1/imports/{import_id}/commit", INGEST)
    assert again.status_code == 200 and again.json()["result"] == {"accepted": 12, "duplicate": 0}
    assert total(egress(api, "imported", *window)) == 120
    assert call(api, "GET", "/v1/imports?status=running", READ).json()["imports"] == []


def test_the_ingest_key_pushes_and_reads_nothing_and_a_read_key_cannot_push(api):
    assert call(api, "GET", "/v1/services", INGEST).status_code == 403
    assert call(api, "GET", "/v1/imports", INGEST).status_code == 403
    refused = call(api, "POST", "/v1/events", READ, [event("k1", time.time() - 60, 1)], BATCH)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert call(api, "POST", "/v1/events", ADMIN, [event("k1", time.time() - 60, 1)], BATCH).json()["accepted"] == 1


def test_bwmeter_import_does_the_whole_cycle_with_progress_and_counts_once(api, tmp_path):
    import io

    from bwmeter.cli import main

    at = int(time.time()) - 86400
    path = tmp_path / "november.csv"
    rows = ["id,time,service,direction,bytes,route"] + [f"c{i},{iso(at)},from-csv,egress,{i},/r{i % 3}"
                                                        for i in range(25)]
    rows.append(f"bad,{iso(at)},from-csv,sideways,1,/r")
    path.write_text("\n".join(rows) + "\n")
    env = {"BWMETER_URL": api.url, "BWMETER_API_KEY": INGEST}
    out, err = io.StringIO(), io.StringIO()
    assert main(["import", str(path), "--batch-size", "10"], env=env, stdout=out, stderr=err) == 0
    assert "Committed import" in out.getvalue() and "25 counted, 0 already counted, 1 refused" in out.getvalue()
    assert "sending    [" in err.getvalue() and "] 3/3" in err.getvalue() and "committing [" in err.getvalue()
    assert "direction" in err.getvalue()  # the refused event's reason
    window = (at // 60 * 60 - 60, at // 60 * 60 + 120)
    assert total(egress(api, "from-csv", *window)) == sum(range(25))
    # The same file again: a new import whose events are all already counted
    out = io.StringIO()
    assert main(["import", str(path)], env=env, stdout=out, stderr=io.StringIO()) == 0
    assert "0 counted, 25 already counted, 1 refused" in out.getvalue()
    assert total(egress(api, "from-csv", *window)) == sum(range(25))
