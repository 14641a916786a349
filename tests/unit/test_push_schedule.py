"""The scheduled run finishes push batches left by requests that died (chalicelib/schedule.py,
pushed.PushedUsage.resume_stale), even when no later push comes; its failure never fails the run.
moto in-process, the app's own parts (bootstrap) around a fake collector."""
import logging

import pytest

from chalicelib import bootstrap, schedule
from chalicelib.collect.collector import CollectorRunFailed
from chalicelib.collect.report import RunReport
from chalicelib.core import events as ev
from chalicelib.core.errors import StoreError
from chalicelib.core.models import PUSH_PENDING_PK, PushBatch
from chalicelib.core.pushed import STALE_SECONDS, PushedUsage
from chalicelib.core.timeutil import parse_time

NOW = parse_time("2026-12-04T12:30:20Z")
LATER = NOW + STALE_SECONDS + 60  # the dead request's record is stale by then


class FakeCollector:
    def __init__(self, failure=None):
        self.failure = failure

    def run(self, now):
        if self.failure:
            raise self.failure
        return RunReport(status="ok", minutes=1)


def event(i, nbytes, time="2026-12-04T12:10:30Z", direction="egress"):
    raw = {"specversion": "1.0", "id": str(i), "source": "/cdn-logs", "type": ev.EVENT_TYPE, "time": time,
           "data": {"service": "cdn", "direction": direction, "bytes": nbytes}}
    return ev.judge(raw, NOW, 35)


BATCH = [event(1, 100), event(2, 20, direction="ingress"), event(3, 3, time="2026-12-04T12:29:00Z")]


@pytest.fixture
def deps(aws):
    clock = {"now": LATER}
    deps = bootstrap.override(aws, clock=lambda: clock["now"], collector=FakeCollector())
    deps.at = clock
    return deps


def die_after_recording(monkeypatch, deps, events):
    """A push whose request died right after recording its batch (nothing claimed, nothing applied)."""
    with monkeypatch.context() as patched:
        patched.setattr(PushedUsage, "apply", lambda self, *a: (_ for _ in ()).throw(RuntimeError("Lambda timed out")))
        with pytest.raises(RuntimeError):
            deps.store.pushed.push(events, NOW)
    assert len(list(PushBatch.query(PUSH_PENDING_PK))) == 1


def pushed_total(deps, level, start_iso, end_iso):
    """Pushed (ingress, egress) of "cdn" in the buckets of ``level`` starting in [start, end)."""
    buckets = deps.store.pushed.buckets("cdn", level, parse_time(start_iso), parse_time(end_iso))
    return sum(b.ingress for b in buckets), sum(b.egress for b in buckets)


def test_a_batch_left_recorded_is_finished_by_the_scheduled_run_and_counted_once(deps, monkeypatch):
    die_after_recording(monkeypatch, deps, BATCH)
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (0, 0)

    assert schedule.scheduled_run(deps, shard=0)["status"] == "ok"
    assert list(PushBatch.query(PUSH_PENDING_PK)) == []
    assert pushed_total(deps, "1m", "2026-12-04T12:10:00Z", "2026-12-04T12:11:00Z") == (20, 100)
    assert pushed_total(deps, "1m", "2026-12-04T12:29:00Z", "2026-12-04T12:30:00Z") == (0, 3)
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (20, 103)
    # The service is listed with its bytes, as after a push that did not die.
    assert deps.store.get_service("cdn").pushed_at == LATER

    # Neither another run nor the client's late retry counts the events again.
    deps.at["now"] = LATER + 60
    schedule.scheduled_run(deps, shard=0)
    assert deps.store.pushed.push(BATCH, LATER + 120).statuses == ["duplicate"] * 3
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (20, 103)


def test_a_batch_whose_request_may_still_be_running_is_left_to_it(deps, monkeypatch):
    die_after_recording(monkeypatch, deps, BATCH)
    deps.at["now"] = NOW + 30  # within an API request's lifetime: not known to be dead yet
    schedule.scheduled_run(deps, shard=0)
    assert len(list(PushBatch.query(PUSH_PENDING_PK))) == 1
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (0, 0)


def test_a_fixed_shard_leaves_unfinished_pushes_to_the_fleet_shard(deps, monkeypatch):
    die_after_recording(monkeypatch, deps, BATCH)
    deps._shard_collectors = {3: FakeCollector()}
    assert schedule.scheduled_run(deps, shard=3)["status"] == "ok"
    assert len(list(PushBatch.query(PUSH_PENDING_PK))) == 1


def test_a_failed_collect_still_finishes_unfinished_pushes(deps, monkeypatch):
    die_after_recording(monkeypatch, deps, BATCH)
    deps.collector = FakeCollector(CollectorRunFailed("Prometheus unreachable"))
    with pytest.raises(CollectorRunFailed):
        schedule.scheduled_run(deps, shard=0)
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (20, 103)


def test_when_finishing_pushes_fails_the_run_still_returns_the_collectors_report(deps, monkeypatch, caplog):
    die_after_recording(monkeypatch, deps, BATCH)

    def throttled(self, *a, **k):
        raise StoreError("claiming pushed events failed: ProvisionedThroughputExceededException")

    with monkeypatch.context() as patched, caplog.at_level(logging.ERROR, logger="chalicelib.schedule"):
        patched.setattr(PushedUsage, "_claim", throttled)
        result = schedule.scheduled_run(deps, shard=0)
    assert result["status"] == "ok" and result["minutes"] == 1 and result["enforcement"] is None
    assert "finishing unfinished pushes failed" in caplog.text and "ProvisionedThroughput" in caplog.text
    # The record stays for the next run, which counts the batch once.
    assert len(list(PushBatch.query(PUSH_PENDING_PK))) == 1
    schedule.scheduled_run(deps, shard=0)
    assert pushed_total(deps, "1d", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z") == (20, 103)
