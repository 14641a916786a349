"""The scheduled collector: raw Prometheus samples -> exact usage in DynamoDB.

One run: take the lease, collect from the watermark to ``now - lag`` in chunks,
and for each chunk write minute items, the rollups the chunk completed, and each
active service's usage in its current quota period; only then move the
watermark. A failed chunk leaves the watermark where it was, so the next run
redoes it with the same deterministic keys and absolute values.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from chalicelib.collect import kong
from chalicelib.core import observability
from chalicelib.core.errors import BadSample, BandwidthMeterError
from chalicelib.core.models import ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.collect.prometheus import PrometheusClient
from chalicelib.core.quotas import QuotaBook
from chalicelib.core.store import LEASE_SECONDS, UsageStore
from chalicelib.core.timeutil import LEVEL_ORDER, LEVELS, MINUTE, floor, floor_minute, iso
from chalicelib.collect.deltas import MinuteAccumulator, series_deltas
from chalicelib.core.usage import BucketUsage, sum_buckets, usage_in

log = logging.getLogger(__name__)

@dataclass
class RunReport:
    status: str  # "ok" | "skipped" | "idle" | "failed"
    start: Optional[str] = None
    end: Optional[str] = None
    minutes: int = 0
    series_seen: int = 0
    minutes_written: int = 0
    items_written: int = 0
    schemas: List[str] = field(default_factory=list)
    prometheus_requests: int = 0
    error: Optional[str] = None
    gaps: List[List[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class Collector:
    def __init__(self, prometheus: PrometheusClient, store: UsageStore, settings, quotas: QuotaBook = None):
        self.prometheus = prometheus
        self.store = store
        self.settings = settings
        self.quotas = quotas or QuotaBook()

    # -- the run -------------------------------------------------------------------------
    def run(self, now: float) -> RunReport:
        s = self.settings
        run_id = uuid.uuid4().hex
        if not self.store.acquire_lease(run_id, now, LEASE_SECONDS):
            log.info("collector: another run holds the lease; nothing to do")
            observability.collector_run(RunReport(status="skipped").as_dict(), now, None, 0.0, logger=log)
            return RunReport(status="skipped")
        started = time.monotonic()
        writes_before, requests_before = self.store.writes, self.prometheus.requests_made
        state = self.store.state()
        end = floor_minute(now - s.collect_lag_seconds)
        if state.watermark is None:
            start = end - s.initial_backfill_minutes * MINUTE
            collection_start = start
        else:
            start = int(state.watermark)
            collection_start = int(state.collection_start)
        gaps = [list(g) for g in (state.gaps or [])]
        earliest = end - s.max_backfill_minutes * MINUTE
        report = RunReport(status="idle", start=iso(start), end=iso(end))
        if start < earliest:
            # Longer than Prometheus keeps (or than we may backfill): record the hole honestly.
            log.warning("collector: skipping %s..%s, beyond MAX_BACKFILL_MINUTES", iso(start), iso(earliest))
            gaps.append([start, earliest])
            report.gaps.append([start, earliest])
            start = earliest
        try:
            if state.watermark is None or report.gaps:
                self.store.update_state(run_id, watermark=start, collection_start=collection_start, gaps=gaps)
            chunk = s.chunk_minutes * MINUTE
            services = {item.service: item for item in self.store.list_services()}
            book = self.quotas.load()
            for chunk_start in range(start, end, chunk):
                chunk_end = min(chunk_start + chunk, end)
                self._collect_chunk(chunk_start, chunk_end, services, book, report)
                self.store.update_state(run_id, watermark=chunk_end)
                report.minutes += (chunk_end - chunk_start) // MINUTE
            if report.minutes:
                report.status = "ok"
        except BandwidthMeterError as e:
            report.status, report.error = "failed", str(e)
            log.error("collector: run failed at watermark %s: %s", iso(start), e)
        report.items_written = self.store.writes - writes_before
        report.prometheus_requests = self.prometheus.requests_made - requests_before
        finished = time.time()
        self._finish(run_id, now, finished, started, report)
        observability.collector_run(report.as_dict(), now, watermark=start + report.minutes * MINUTE,
                                    duration_seconds=time.monotonic() - started, logger=log)
        if report.status == "failed":
            raise CollectorRunFailed(report.error)
        return report

    def _finish(self, run_id: str, now: float, finished: float, started: float, report: RunReport) -> None:
        fields = dict(
            running_since=None,
            last_run_end=finished,
            last_duration_ms=int((time.monotonic() - started) * 1000),
            last_series_seen=report.series_seen,
            last_minutes_written=report.minutes_written,
            last_items_written=report.items_written,
        )
        if report.schemas:
            fields["schema_seen"] = ",".join(sorted(report.schemas))
        if report.status == "failed":
            fields.update(last_error=report.error, last_error_at=now)
        else:
            fields.update(last_error=None, last_success_at=now)
        self.store.update_state(run_id, **fields)

    # -- one chunk -----------------------------------------------------------------------
    def _collect_chunk(self, start: int, end: int, services: Dict[str, ServiceUsage], book, report: RunReport):
        # When the chunk completes a five-minute bucket, read that bucket's earlier minutes
        # again too (the same raw samples give the same values), so five-minute rollups are
        # summed in memory instead of read back item by item.
        five = LEVELS["5m"]
        read_from = floor(start, five) if floor(end, five) > start else start
        all_minutes = self.read_minutes(read_from, end, report).minutes()
        fresh = [b for b in all_minutes if b.start >= start]
        report.minutes_written += self.store.put_buckets("1m", fresh)
        by_service: Dict[str, List[BucketUsage]] = {}
        for bucket in fresh:
            by_service.setdefault(bucket.service, []).append(bucket)
        for service, buckets in by_service.items():
            known = services.get(service)
            first = buckets[0].start
            if known is None:
                services[service] = ServiceUsage("SERVICES", service, service=service, first_seen=first,
                                                 last_active=buckets[-1].start, through=start,
                                                 period_kind="month", period_start=0, period_end=0)
            else:
                known.last_active = max(int(known.last_active), buckets[-1].start)
                known.first_seen = min(int(known.first_seen), first)
        self._write_five_minute_rollups(read_from, end, all_minutes)
        self._write_rollups(start, end, services)
        changed = [self._period_usage(services[name], buckets, book, start, end)
                   for name, buckets in by_service.items()]
        self.store.put_services([item for item in changed if item is not None])

    def _write_five_minute_rollups(self, read_from: int, end: int, minutes: List[BucketUsage]) -> None:
        five = LEVELS["5m"]
        complete_until = floor(end, five)
        rollups: Dict[tuple, BucketUsage] = {}
        for bucket in minutes:
            if bucket.start < complete_until:
                key = (bucket.service, floor(bucket.start, five))
                rollups.setdefault(key, BucketUsage(bucket.service, key[1])).merge(bucket)
        self.store.put_buckets("5m", list(rollups.values()))

    def read_minutes(self, start: int, end: int, report: RunReport) -> MinuteAccumulator:
        """Exact per-minute bytes (and traffic statistics) in [start, end) from raw samples."""
        acc = MinuteAccumulator()
        seen = 0
        for labels, per_minute in self._deltas(kong.bandwidth_selector(self.settings.kong_schema), start, end):
            key = kong.bandwidth_key(labels)
            acc.add(key.service, key.route, key.direction, per_minute)
            seen += 1
            schema = kong.detect_schema(labels)
            if schema not in report.schemas:
                report.schemas.append(schema)
        if self.settings.collect_traffic_stats:
            for labels, per_minute in self._deltas(kong.REQUESTS_SELECTOR, start, end):
                if labels.get("service") and labels.get("code"):
                    acc.add_status(labels["service"], labels["code"], per_minute)
            for selector, part in ((kong.LATENCY_BUCKET_SELECTOR, "buckets"), (kong.LATENCY_SUM_SELECTOR, "sum"),
                                   (kong.LATENCY_COUNT_SELECTOR, "count")):
                for labels, per_minute in self._deltas(selector, start, end, integer=part != "sum"):
                    if labels.get("service") and (part != "buckets" or labels.get("le")):
                        acc.add_latency(labels["service"], part, per_minute, labels.get("le"))
        report.series_seen = max(report.series_seen, seen)
        return acc

    def _deltas(self, selector: str, start: int, end: int, integer: bool = True):
        """(labels, per-minute increase) for every series of ``selector`` in the window."""
        previous = self.prometheus.last_values(selector, start, self.settings.series_lookback_seconds)
        previous = {self._strip_replicas(k): v for k, v in previous.items()}
        for one in self._dedupe_replicas(self.prometheus.raw_samples(selector, start, end)):
            try:
                per_minute = series_deltas(previous.get(self._strip_replicas(one.key)), one.samples, integer)
                yield one.labels, per_minute
            except BadSample as e:
                raise BadSample(f"{e} (series {one.labels}, window {iso(start)}..{iso(end)})") from e

    def _strip_replicas(self, key):
        drop = set(self.settings.replica_labels)
        return tuple(kv for kv in key if kv[0] not in drop) if drop else key

    def _dedupe_replicas(self, series):
        """With HA Prometheus pairs, keep one replica's copy of each series (the first by name)."""
        if not self.settings.replica_labels:
            return series
        chosen = {}
        for one in sorted(series, key=lambda s: s.key):
            chosen.setdefault(self._strip_replicas(one.key), one)
        return list(chosen.values())

    def _write_rollups(self, start: int, end: int, services: Dict[str, ServiceUsage]) -> None:
        """Recompute every coarser rollup this chunk completed, from the next finer level."""
        for finer, level in zip(LEVEL_ORDER[1:], LEVEL_ORDER[2:]):
            size, finer_size = LEVELS[level], LEVELS[finer]
            bucket_end = floor(start, size) + size
            while bucket_end <= end:
                bucket_start = bucket_end - size
                active = [name for name, item in services.items() if int(item.last_active) >= bucket_start
                          and int(item.first_seen) < bucket_end]
                if active:
                    keys = [(name, t) for name in active for t in range(bucket_start, bucket_end, finer_size)]
                    parts = self.store.get_buckets(finer, keys)
                    rollups = []
                    for name in active:
                        found = [parts[(name, t)] for t in range(bucket_start, bucket_end, finer_size)
                                 if (name, t) in parts]
                        if found:
                            rollups.append(sum_buckets(name, bucket_start, found))
                    self.store.put_buckets(level, rollups)
                bucket_end += size

    def _period_usage(self, item: ServiceUsage, buckets: List[BucketUsage], book, start: int, end: int):
        """Set the service's usage in its current quota period, absolutely, from the stored
        figure and this chunk's minutes (those after ``through`` only, so a retry adds nothing)."""
        quota = book.quota_for(item.service)
        kind, anchor = quota.period, quota.anchor_day
        through = int(item.through)
        counted = False
        for bucket in buckets:
            if bucket.start < through:
                continue  # already counted by an earlier (failed-then-retried) run
            period = period_at(kind, bucket.start, anchor)
            if not item.holds(period):
                if counted:
                    # The chunk crosses into a new period: store the old period's final
                    # figure first, so the alerts function sees its last crossing too.
                    item.total = int(item.ingress) + int(item.egress)
                    item.through = bucket.start
                    self.store.put_services([ServiceUsage.from_raw_data(item.serialize())])
                # A new period starts clean; at first sight, or when the quota's period
                # changed, what is stored for the period counts.
                base = usage_in(self.store, item, period)
                item.period_kind, item.period_anchor = kind, anchor
                item.period_start, item.period_end = period.start, period.end
                item.ingress, item.egress = base.ingress, base.egress
            item.ingress = int(item.ingress) + bucket.ingress
            item.egress = int(item.egress) + bucket.egress
            counted = True
        item.total = int(item.ingress) + int(item.egress)
        item.through = max(through, end)
        return item


class CollectorRunFailed(BandwidthMeterError):
    """Raised after a failed run is recorded, so the scheduler (Lambda) sees the failure."""
