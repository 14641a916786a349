"""Marker claims (chalicelib/core/claims.py: aiodynamo on aiohttp) against a moto server process:
the real HTTP layer, signing and errors. Two pushes claiming the same events at once get each
event once between them; a resumed batch claims its own markers again; a server that is gone is
a StoreError, and nothing is claimed."""
import socket
import threading

import pytest

from chalicelib.core import claims
from chalicelib.core.errors import StoreError
from chalicelib.core.events import UsageEvent
from chalicelib.core.models import EventMarker, event_marker_key
from chalicelib.core.pushed import ACCEPTED, DUPLICATE
from chalicelib.core.store import UsageStore
from chalicelib.core.timeutil import parse_time

NOW = parse_time("2026-12-04T12:30:20Z")


def events(prefix, n):
    return [UsageEvent("/logs", f"{prefix}-{i}", "cdn", "egress", 1, NOW - 60) for i in range(n)]


@pytest.fixture
def pushed(aws_server):
    assert claims.transport is None  # aiohttp, the production path
    return UsageStore(minute_ttl_days=35).pushed


def test_two_pushes_of_the_same_events_at_once_accept_each_event_once(pushed):
    shared = events("shared", 300)
    results = {}
    start = threading.Barrier(2)

    def push(batch, own):
        start.wait()
        results[batch] = pushed._claim(batch, own, NOW)

    threads = [threading.Thread(target=push, args=("batch-a", shared + events("a", 50))),
               threading.Thread(target=push, args=("batch-b", list(reversed(shared)) + events("b", 50)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a, b = results["batch-a"], results["batch-b"]
    b_shared = list(reversed(b[:300]))
    for first, second in zip(a[:300], b_shared):
        assert sorted([first, second]) == [ACCEPTED, DUPLICATE]
    assert a[300:] == b[300:] == [ACCEPTED] * 50
    owners = {EventMarker.get(*event_marker_key(e.digest)).batch for e in shared}
    assert owners <= {"batch-a", "batch-b"}
    # Each marker belongs to the batch that was told ACCEPTED for it.
    for event, status in zip(shared, a[:300]):
        assert (EventMarker.get(*event_marker_key(event.digest)).batch == "batch-a") == (status == ACCEPTED)


def test_a_resumed_batch_claims_its_own_markers_again_and_another_batch_finds_them_taken(pushed):
    mine = events("resume", 40)
    assert pushed._claim("batch-1", mine, NOW) == [ACCEPTED] * 40
    assert pushed._claim("batch-1", mine, NOW + 60) == [ACCEPTED] * 40
    assert pushed._claim("batch-2", mine[:5] + events("new", 2), NOW + 60) == [DUPLICATE] * 5 + [ACCEPTED] * 2


def test_a_server_that_is_gone_is_a_store_error_and_nothing_is_claimed(pushed, monkeypatch):
    monkeypatch.setattr(claims, "RETRY_SECONDS", 0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(StoreError, match="claiming pushed events failed"):
        pushed.claims.put_unless(str(EventMarker.Meta.table_name), "us-east-1", f"http://127.0.0.1:{closed_port}",
                                 [{"pk": "EVENT#x", "sk": "x", "batch": "b", "expires_at": 1}], "b")
    assert list(EventMarker.scan()) == []
