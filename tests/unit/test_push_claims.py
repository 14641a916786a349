"""Claiming pushed events (PushedUsage._claim): one conditional put per event, through aiodynamo
(chalicelib/core/claims.py; our CPU per request); accepted when there is no marker or the marker is
this batch's own, a duplicate otherwise. moto in-process (reached through ``requests``)."""
import pytest

from chalicelib.core import events as ev
from chalicelib.core.models import EventMarker, event_marker_key
from chalicelib.core.pushed import ACCEPTED, DUPLICATE
from chalicelib.core.store import UsageStore
from chalicelib.core.timeutil import DAY, parse_time

NOW = parse_time("2026-12-04T12:30:20Z")


@pytest.fixture
def pushed(aws):
    return UsageStore(minute_ttl_days=35).pushed


def events(*ids, time="2026-12-04T12:10:30Z"):
    return [ev.judge({"specversion": "1.0", "id": i, "source": "/logs", "type": ev.EVENT_TYPE, "time": time,
                      "data": {"service": "cdn", "direction": "egress", "bytes": 1}}, NOW, 35) for i in ids]


def test_a_marker_is_claimed_once_and_again_only_by_its_own_batch(pushed):
    first = events("a", "b", "c", "d", "e")
    assert pushed._claim("batch-1", first, NOW) == [ACCEPTED] * 5
    # A resumed batch claims its own markers again; another batch finds them taken.
    assert pushed._claim("batch-1", first, NOW + 60) == [ACCEPTED] * 5
    assert pushed._claim("batch-2", events("c", "f", "a", "g"), NOW + 60) == [DUPLICATE, ACCEPTED, DUPLICATE, ACCEPTED]
    marker = EventMarker.get(*event_marker_key(first[2].digest))
    assert marker.batch == "batch-1"


def test_a_marker_is_kept_a_day_past_the_retention_from_the_later_of_now_and_the_events_time(pushed):
    [late], [early] = events("x", time="2026-12-04T12:33:00Z"), events("y", time="2026-11-30T00:00:00Z")
    pushed._claim("batch-1", [late, early], NOW)
    assert EventMarker.get(*event_marker_key(late.digest)).expires_at.timestamp() == late.time + 36 * DAY
    assert EventMarker.get(*event_marker_key(early.digest)).expires_at.timestamp() == NOW + 36 * DAY


def test_a_claim_that_cannot_reach_dynamodb_fails_as_a_store_error_and_counts_nothing(pushed, monkeypatch):
    from chalicelib.core import claims
    from chalicelib.core.errors import StoreError

    async def unreachable(request):
        from aiodynamo.http.types import RequestFailed
        raise RequestFailed(ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(claims, "transport", unreachable)
    monkeypatch.setattr(claims, "RETRY_SECONDS", 0.2)
    with pytest.raises(StoreError, match="claiming pushed events failed: ConnectionRefusedError"):
        pushed._claim("batch-1", events("a", "b"), NOW)
    assert list(EventMarker.scan()) == []


def test_a_put_that_timed_out_is_tried_again(pushed, monkeypatch):
    import asyncio

    from chalicelib.core import claims
    from tests.support.claims_transport import through_requests

    tries = []

    async def stalls_once(request):
        tries.append(request)
        if len(tries) == 1:
            raise asyncio.TimeoutError()
        return await through_requests(request)

    monkeypatch.setattr(claims, "transport", stalls_once)
    assert pushed._claim("batch-1", events("a"), NOW) == [ACCEPTED]
    assert len(tries) == 2 and EventMarker.get(*event_marker_key(events("a")[0].digest)).batch == "batch-1"


def test_a_refusal_other_than_the_condition_is_a_store_error(pushed):
    from chalicelib.core.errors import StoreError

    items = [{"pk": "marker#x", "sk": "x", "batch": "b", "expires_at": 1}]
    with pytest.raises(StoreError, match="claiming pushed events failed"):
        pushed.claims.put_unless("no-such-table", "us-east-1", None, items, "b")
