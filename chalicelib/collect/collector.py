"""The scheduled collector: raw Prometheus samples -> exact usage in DynamoDB.

One run is a pipeline: **plan** which minutes (plan.run_span) and, chunk by chunk, which
services and queries (the shard's role, plan.py) -> **read** the window from Prometheus
(window.py) -> **compute and write** minute items, the rollups the chunk completed and each
active service's usage in its current quota period (write.py) -> **record** the watermark, only
then (record.py). A failed chunk leaves the watermark where it was, so the next run redoes it
with the same deterministic keys and absolute values.

Enforcement is not the collector's: the schedule runs the reconcile after it (chalicelib/schedule.py).
"""
from __future__ import annotations

import logging
import time
from typing import AbstractSet, Callable, List, Sequence, Set

from chalicelib.collect import consumers, plan, shards
from chalicelib.collect.plan import ChunkPlan, RunSpan, Services
from chalicelib.collect.record import RunRecord
from chalicelib.collect.report import RunReport
from chalicelib.collect.window import WindowReader
from chalicelib.collect.write import ChunkWriter
from chalicelib.core import observability
from chalicelib.core.errors import BandwidthMeterError
from chalicelib.core.timeutil import MINUTE, iso

log = logging.getLogger(__name__)


class CollectorRunFailed(BandwidthMeterError):
    """Raised after a failed run is recorded, so the scheduler (Lambda) sees the failure."""


class Collector:
    def __init__(self, prometheus, store, settings, quotas, clock: Callable[[], float] = time.time, shard: int = 0):
        self.role = plan.role_for(store, settings, prometheus, shard)
        self.prometheus = prometheus
        self.store = store
        self.settings = settings
        self.quotas = quotas
        self.clock = clock
        self.reader = WindowReader(prometheus, settings)
        self.writer = ChunkWriter(store, self.role)

    @property
    def shard(self) -> int:
        return self.role.shard

    def run(self, now: float) -> RunReport:
        """Take the lease, collect from the watermark to ``now - lag`` in chunks, release it."""
        record = RunRecord.acquire(self.store, self.shard, now)
        if record is None:
            log.info("collector: another run of shard %s holds the lease; nothing to do", self.shard)
            skipped = RunReport(status="skipped", shard=self.shard)
            observability.collector_run(skipped.as_dict(), now, None, 0.0, logger=log)
            return skipped
        started, report = time.monotonic(), RunReport(status="idle", shard=self.shard)
        counters = self.store.writes, self.prometheus.requests_made
        span = None
        try:
            state = self.store.state(self.shard)
            span = plan.run_span(state, now, self.settings, self.role)
            report.start, report.end = iso(span.asked_from), iso(span.end)
            report.gaps = [list(span.skipped)] if span.skipped else []
            record.open(state, span)
            self.writer.consumers_through = None if state.consumers_through is None else int(state.consumers_through)
            self._collect(span, record, report)
            if self.shard == 0 and consumers.ranking_due(self.store, now):
                # The consumers listing's orders by usage and percent (api/consumers.py).
                consumers.refresh_rankings(self.store, self.quotas.load(), now)
        except Exception as e:  # any failure (a bug too) is recorded and the lease released first
            expected = isinstance(e, BandwidthMeterError)
            report.status, report.error = "failed", str(e) if expected else f"unexpected {type(e).__name__}: {e}"
            log.error("collector: shard %s failed at watermark %s: %s", self.shard, iso(span.start) if span else "?",
                      e, exc_info=not expected)
            self._finish(record, report, now, started, span, counters)
            if expected:
                raise CollectorRunFailed(report.error) from e
            raise
        self._finish(record, report, now, started, span, counters)
        return report

    def _collect(self, span: RunSpan, record: RunRecord, report: RunReport) -> None:
        """Chunk by chunk: plan, read, compute and write, then record the watermark."""
        services = self.role.services()
        snapshot = self.quotas.load()
        self.writer.align_periods(services, snapshot, span.start)
        for start, end in span.chunks(self.settings.chunk_minutes):
            chunk = self.role.plan(start, end, services)
            fresh = self._take_on(chunk, services, snapshot, start, report)
            report.deferred = chunk.deferred
            unobserved = self._count(start, end, services, snapshot, report, chunk.matchers,
                                     record_gaps=not chunk.deferred, fresh=fresh)
            self.role.hand_over(end, services)
            if chunk.deferred:
                # More unassigned services than one invocation counts (a first deployment,
                # sharding turned on): those counted are handed over; the next run counts this
                # same window again for the rest (idempotent: absolute writes from the same
                # checkpoints), and the watermark waits until none is left.
                log.info("collector: %d unassigned services wait for the next run of %s..%s",
                         chunk.deferred, iso(start), iso(end))
                report.status = "ok"
                return
            record.advance(end, unobserved, consumers_through=self.writer.consumers_through)
            report.gaps.extend(unobserved)
            report.minutes += (end - start) // MINUTE
        if report.minutes:
            report.status = "ok"

    def _take_on(self, chunk: ChunkPlan, services: Services, snapshot, start: int, report: RunReport) -> Set[str]:
        """Apply a chunk's plan to the services counted: drop those taken by a fixed shard, add
        those the catch-all met, and count a fixed shard's newcomers from their hand-over to
        ``start`` (alone) before it takes them over. Returns the newcomers' names."""
        for name in chunk.dropped:
            del services[name]
        if chunk.loaded:
            self.writer.align_periods(chunk.loaded, snapshot, start)
            services.update(chunk.loaded)
        if not chunk.taken_over:
            return set()
        size = self.settings.chunk_minutes * MINUTE
        newcomers: Services = {}
        for at, group in chunk.handed_over:
            for catch_up in range(at, start, size):
                self._count(catch_up, min(catch_up + size, start), group, snapshot, report,
                            shards.owned_matchers(group), record_gaps=False, newcomers=True)
            newcomers.update(group)
        self.store.put_services(list(newcomers.values()))
        self.store.take_over(self.shard, chunk.taken_over)
        services.update(newcomers)
        return set(newcomers)

    def _count(self, start: int, end: int, services: Services, snapshot, report: RunReport,
               matchers: Sequence[str] = ("",), record_gaps: bool = True, newcomers: bool = False,
               fresh: AbstractSet[str] = frozenset()) -> List[List[int]]:
        """Read, compute and write [start, end). Returns the stretches of the window in which
        Prometheus observed none of the known series."""
        window = self.reader.read(start, end, services, report, matchers)
        report.minutes_written += self.writer.write(window, start, end, services, snapshot, newcomers, fresh)
        report.unstored(self.store.take_oversized())
        if not record_gaps:
            return []
        return window.unobserved(start, end, bool(services), self.settings.unobserved_gap_minutes)

    def _finish(self, record: RunRecord, report: RunReport, now: float, started: float, span, counters) -> None:
        """Record the run (releasing the lease), then log it and emit its metrics."""
        writes_before, requests_before = counters
        report.items_written = self.store.writes - writes_before
        report.prometheus_requests = self.prometheus.requests_made - requests_before
        record.close(report, now, self.clock(), int((time.monotonic() - started) * 1000))
        watermark = span.start + report.minutes * MINUTE if span else None
        observability.collector_run(report.as_dict(), now, watermark=watermark,
                                    duration_seconds=time.monotonic() - started, logger=log)
