"""A run's record in its shard's state: the lease it holds, the watermark it moves chunk by chunk
(only after a chunk is written, so a failed one is redone), the gaps, and how the run ended.

The lease is released however the run ends, an unexpected exception included: a run that kept
it would skip every later run for LEASE_SECONDS (and the alerts' sweep with them).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Dict, List, Optional

from chalicelib.collect.plan import RunSpan
from chalicelib.collect.report import QUARANTINE_SHOWN, RunReport
from chalicelib.core.store import LEASE_SECONDS
from chalicelib.core.timeutil import iso

log = logging.getLogger(__name__)


class RunRecord:
    def __init__(self, store, shard: int, run_id: str):
        self.store = store
        self.shard = shard
        self.run_id = run_id
        self.gaps: List[List[int]] = []

    @classmethod
    def acquire(cls, store, shard: int, now: float) -> Optional["RunRecord"]:
        """The run's record, or None while another live run of the shard holds the lease."""
        run_id = uuid.uuid4().hex
        if not store.acquire_lease(run_id, now, LEASE_SECONDS, shard=shard):
            return None
        return cls(store, shard, run_id)

    def open(self, state, span: RunSpan) -> None:
        """Before the first chunk: a first run's start, and the minutes skipped as a gap."""
        self.gaps = [list(g) for g in (state.gaps or [])]
        if span.skipped:
            log.warning("collector: skipping %s..%s, beyond MAX_BACKFILL_MINUTES", *map(iso, span.skipped))
            self.gaps.append(list(span.skipped))
        if span.first or span.skipped:
            self.update(watermark=span.start, collection_start=span.collection_start, gaps=self.gaps)

    def advance(self, watermark: int, unobserved: List[List[int]], consumers_through: Optional[int] = None) -> None:
        """A chunk is written: move the watermark, with the stretches Prometheus saw nothing in
        (and where the consumers' items were last all written, collect/consumers.py)."""
        fields: Dict[str, Any] = {"watermark": watermark}
        if consumers_through is not None:
            fields["consumers_through"] = consumers_through
        if unobserved:
            self.gaps = merge_gaps(self.gaps + unobserved)
            fields["gaps"] = self.gaps
        self.update(**fields)

    def close(self, report: RunReport, now: float, finished: float, duration_ms: int) -> None:
        """Release the lease and leave the run's figures (and error, if any) in the state."""
        fields: Dict[str, Any] = dict(running_since=None, last_run_end=finished)
        if report.status != "idle":
            # The figures (and the quarantine) are those of the last run that had a minute to
            # collect: a run on a schedule faster than the minute (make run's COLLECT_INTERVAL)
            # finds none most of the time, and "0 series" then would say nothing of the fleet.
            fields.update(last_duration_ms=duration_ms,
                          last_series_seen=report.series_seen, last_minutes_written=report.minutes_written,
                          last_items_written=report.items_written,
                          quarantined=report.quarantined[:QUARANTINE_SHOWN] or None,
                          quarantined_count=len(report.quarantined), services_waiting=report.deferred or None)
        if report.schemas:
            fields["schema_seen"] = ",".join(sorted(report.schemas))
        if report.status == "failed":
            fields.update(last_error=report.error, last_error_at=now)
        else:
            fields.update(last_error=None, last_success_at=now)
        self.update(**fields)

    def update(self, **fields) -> None:
        self.store.update_state(self.run_id, shard=self.shard, **fields)


def merge_gaps(gaps: List[List[int]]) -> List[List[int]]:
    merged: List[List[int]] = []
    for a, b in sorted(gaps):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged
