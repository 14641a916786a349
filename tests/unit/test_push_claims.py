"""Claiming pushed events (PushedUsage._claim): one conditional put per event, shaped by hand
rather than through the EventMarker model (our CPU per request); accepted when there is no marker
or the marker is this batch's own, a duplicate otherwise. moto in-process."""
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


def test_the_markers_connection_pool_holds_a_connection_per_worker(pushed):
    """With a smaller pool a connection coming back to a full pool is closed: against DynamoDB each
    one opened again is a new TLS connection."""
    assert pushed._marker_connection().client.meta.config.max_pool_connections == pushed.workers == 16
