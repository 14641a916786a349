"""The scheduled collector: raw Prometheus samples -> exact usage in DynamoDB.

One run: take the lease, collect from the watermark to ``now - lag`` in chunks,
and for each chunk write minute items, the rollups the chunk completed, and each
active service's usage in its current quota period; only then move the
watermark. A failed chunk leaves the watermark where it was, so the next run
redoes it with the same deterministic keys and absolute values.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set

from chalicelib.collect import kong, shards
from chalicelib.collect.checkpoint import Checkpoint, Reading, baseline_for_chunk, series_id
from chalicelib.core import observability
from chalicelib.core.errors import BadSample, BandwidthMeterError
from chalicelib.core.models import ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.collect.prometheus import PrometheusClient
from chalicelib.core.quota_book import QuotaBook
from chalicelib.core.store import LEASE_SECONDS, UsageStore
from chalicelib.core.timeutil import LEVEL_ORDER, LEVELS, MINUTE, floor, floor_minute, iso
from chalicelib.collect.deltas import MinuteAccumulator, series_deltas
from chalicelib.core.usage import BucketUsage, sum_buckets, usage_in

log = logging.getLogger(__name__)

@dataclass
class RunReport:
    status: str  # "ok" | "skipped" | "idle" | "failed"
    shard: int = 0
    start: Optional[str] = None
    end: Optional[str] = None
    minutes: int = 0
    series_seen: int = 0
    minutes_written: int = 0
    items_written: int = 0
    schemas: List[str] = field(default_factory=list)
    prometheus_requests: int = 0
    error: Optional[str] = None
    enforcement: Optional[dict] = None  # the reconcile's report (chalicelib/enforce), when enforcing
    gaps: List[List[int]] = field(default_factory=list)
    deferred: int = 0  # the catch-all: unassigned services left for its next run of the same window
    quarantined: List[dict] = field(default_factory=list)  # series skipped, with the reason
    _quarantined_series: Set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        report = asdict(self)
        del report["_quarantined_series"]
        return report

    def quarantine(self, labels: Dict[str, str], reason: str) -> None:
        """Skip a bad series (once per run in the report and the log), never the run."""
        entry = quarantine_entry(labels)
        if entry not in self._quarantined_series:
            self._quarantined_series.add(entry)
            self.quarantined.append({"series": entry, "reason": reason})
            log.warning("collector: series quarantined (%s): %s", reason, entry)


class Collector:
    def __init__(self, prometheus: PrometheusClient, store: UsageStore, settings, quotas: QuotaBook,
                 clock: Callable[[], float] = time.time, enforcer=None, shard: int = 0):
        if not 0 <= shard < settings.shard_count:
            raise ValueError(f"shard {shard} is not one of 0..{settings.shard_count - 1} (SHARD_COUNT)")
        self.enforcer = enforcer  # anything with reconcile(now) -> report with as_dict(); None: off
        self.shard = shard
        self.prometheus = prometheus
        self.store = store
        self.settings = settings
        self.quotas = quotas
        self.clock = clock

    # -- the run -------------------------------------------------------------------------
    def run(self, now: float) -> RunReport:
        s = self.settings
        shard = self.shard
        run_id = uuid.uuid4().hex
        if not self.store.acquire_lease(run_id, now, LEASE_SECONDS, shard=shard):
            log.info("collector: another run of shard %s holds the lease; nothing to do", shard)
            skipped = RunReport(status="skipped", shard=shard)
            observability.collector_run(skipped.as_dict(), now, None, 0.0, logger=log)
            return skipped
        started = time.monotonic()
        writes_before, requests_before = self.store.writes, self.prometheus.requests_made
        state = self.store.state(shard)
        end = floor_minute(now - s.collect_lag_seconds)
        if state.watermark is None:
            start = end - s.initial_backfill_minutes * MINUTE
            collection_start = start
            if shard != 0:
                # A fixed shard counts services the catch-all counted before: their history
                # begins where the catch-all's does.
                first = self.store.state(0).collection_start
                collection_start = min(start, int(first)) if first is not None else start
        else:
            start = int(state.watermark)
            collection_start = int(state.collection_start)
        gaps = [list(g) for g in (state.gaps or [])]
        earliest = end - s.max_backfill_minutes * MINUTE
        report = RunReport(status="idle", start=iso(start), end=iso(end), shard=shard)
        if start < earliest:
            # Longer than Prometheus keeps (or than we may backfill): record the hole honestly.
            log.warning("collector: skipping %s..%s, beyond MAX_BACKFILL_MINUTES", iso(start), iso(earliest))
            gaps.append([start, earliest])
            report.gaps.append([start, earliest])
            start = earliest
        try:
            if state.watermark is None or report.gaps:
                self.store.update_state(run_id, shard=shard, watermark=start, collection_start=collection_start,
                                        gaps=gaps)
            chunk = s.chunk_minutes * MINUTE
            services = self._load_services()
            book = self.quotas.load()
            self._align_periods(services, book, start)
            for chunk_start in range(start, end, chunk):
                chunk_end = min(chunk_start + chunk, end)
                matchers = self._plan_chunk(chunk_start, chunk_end, services, book, report)
                unobserved = self._collect_chunk(chunk_start, chunk_end, services, book, report, matchers,
                                                 record_gaps=not report.deferred)
                self._hand_over(chunk_end, services)
                if report.deferred:
                    # More unassigned services than one invocation counts (a first deployment,
                    # sharding turned on): those counted are handed over; the next run counts this
                    # same window again for the rest (idempotent: absolute writes from the same
                    # checkpoints), and the watermark waits until none is left.
                    log.info("collector: %d unassigned services wait for the next run of %s..%s",
                             report.deferred, iso(chunk_start), iso(chunk_end))
                    report.status = "ok"
                    break
                if unobserved:
                    gaps = merge_gaps(gaps + unobserved)
                    report.gaps.extend(unobserved)
                    self.store.update_state(run_id, shard=shard, watermark=chunk_end, gaps=gaps)
                else:
                    self.store.update_state(run_id, shard=shard, watermark=chunk_end)
                report.minutes += (chunk_end - chunk_start) // MINUTE
            if report.minutes:
                report.status = "ok"
        except BandwidthMeterError as e:
            report.status, report.error = "failed", str(e)
            log.error("collector: shard %s failed at watermark %s: %s", shard, iso(start), e)
        report.items_written = self.store.writes - writes_before
        report.prometheus_requests = self.prometheus.requests_made - requests_before
        finished = self.clock()
        self._finish(run_id, now, finished, started, report)
        # After the chunks, and even when they failed: a block must lift at a period's end
        # whether or not Prometheus answers, and no traffic will come to prompt it. One shard
        # (the catch-all) reconciles for the whole fleet.
        if shard == 0:
            report.enforcement = self._enforce(now)
        observability.collector_run(report.as_dict(), now, watermark=start + report.minutes * MINUTE,
                                    duration_seconds=time.monotonic() - started, logger=log)
        if report.status == "failed":
            raise CollectorRunFailed(report.error)
        return report

    def _enforce(self, now: float) -> Optional[dict]:
        """Run the reconcile; its failures are reported (in its state and here), never the run's."""
        if self.enforcer is None:
            return None
        try:
            return self.enforcer.reconcile(now).as_dict()
        except BandwidthMeterError as e:
            log.error("collector: the enforcement reconcile failed: %s", e)
            return {"errors": [str(e)]}

    # -- shards (collect/shards.py) --------------------------------------------------------
    @property
    def sharded(self) -> bool:
        return self.settings.shard_count > 1

    def _load_services(self) -> Dict[str, ServiceUsage]:
        """The services this shard counts, with their checkpoints: the fleet unsharded, else only
        the shard's own. The catch-all starts with none: chunk by chunk it loads the unassigned
        services Prometheus names (_catch_all_matchers), never the whole table."""
        if not self.sharded:
            return {item.service: item for item in self.store.list_services(checkpoints=True)}
        if self.shard == 0:
            return {}
        return {item.service: item for item in self.store.get_services(sorted(self._assignment().services or ()))}

    def _assignment(self):
        return self.store.assignment(self.shard)

    def _plan_chunk(self, start: int, end: int, services: Dict[str, ServiceUsage], book,
                    report: "RunReport") -> List[str]:
        """The label matchers of this chunk's queries ([""]: every series). A fixed shard first
        takes over the services handed to it by now, counting the minutes from their hand-over
        to ``start`` for them alone, so none is counted twice or missed."""
        if not self.sharded:
            return [""]
        if self.shard == 0:
            return self._catch_all_matchers(start, end, services, book, report)
        due = [(at, name) for at, name in shards.parse_incoming(self._assignment().incoming or ()) if at <= start]
        if due:
            newcomers = {item.service: item for item in self.store.get_services({name for _, name in due})}
            for item in newcomers.values():
                item.shard = self.shard
            for at in sorted({at for at, _ in due}):
                group = {name: newcomers[name] for t, name in due if t == at and name in newcomers}
                chunk = self.settings.chunk_minutes * MINUTE
                for catch_up in range(at, start, chunk):
                    self._collect_chunk(catch_up, min(catch_up + chunk, start), group, book, report,
                                        shards.owned_matchers(group), record_gaps=False)
            self.store.put_services(list(newcomers.values()))
            self.store.take_over(self.shard, [f"{at}:{name}" for at, name in due])
            services.update(newcomers)
        return shards.owned_matchers(services)

    def _catch_all_matchers(self, start: int, end: int, services: Dict[str, ServiceUsage], book,
                            report: "RunReport") -> List[str]:
        """The catch-all's queries: the unassigned services Prometheus names in the window, by
        name, in bounded groups (a fleet met all at once, as on a first deployment, is read a
        group at a time too), and the traffic that matched no service. Their items (checkpoints
        included) are loaded first: new services have none; services of a shard that was
        removed (SHARD_COUNT lowered) and those counted before sharding began have theirs."""
        assigned = shards.assigned_names(self.store.assignments(self.settings.shard_count))
        for name in assigned & set(services):
            del services[name]  # taken by a fixed shard since the run began
        named = self.prometheus.label_values("service", kong.bandwidth_selector(self.settings.kong_schema),
                                             start - self.settings.late_sample_seconds, end - 0.001)
        unassigned = sorted(((set(named) - assigned) | set(services)) - {kong.UNMATCHED_SERVICE})
        # An invocation counts at most CATCH_ALL_BATCH of them, so its time and memory stay
        # bounded when a whole fleet is new at once; the rest wait for the next run (run()).
        report.deferred = max(0, len(unassigned) - CATCH_ALL_BATCH)
        unassigned = set(unassigned[:CATCH_ALL_BATCH])
        unloaded = (unassigned | {kong.UNMATCHED_SERVICE}) - set(services)
        if unloaded:
            loaded = {item.service: item for item in self.store.get_services(sorted(unloaded))}
            self._align_periods(loaded, book, start)
            services.update(loaded)
        return shards.owned_matchers(unassigned) + [shards.UNMATCHED_MATCHER]

    def _hand_over(self, at: int, services: Dict[str, ServiceUsage]) -> None:
        """The catch-all gives every service it counted up to ``at`` to its fixed shard."""
        if not self.sharded or self.shard != 0:
            return
        by_shard: Dict[int, List[str]] = {}
        for name in list(services):
            if not shards.stays_in_catch_all(name):
                by_shard.setdefault(shards.shard_of(name, self.settings.shard_count), []).append(name)
        for target, names in sorted(by_shard.items()):
            self.store.hand_over(target, at, names)
            for name in names:
                del services[name]
            log.info("collector: %d services handed to shard %d from %s", len(names), target, iso(at))

    def _finish(self, run_id: str, now: float, finished: float, started: float, report: RunReport) -> None:
        fields = dict(running_since=None, last_run_end=finished)
        if report.status != "idle":
            # The figures (and the quarantine) are those of the last run that had a minute to
            # collect: a run on a schedule faster than the minute (make run's COLLECT_INTERVAL)
            # finds none most of the time, and "0 series" then would say nothing of the fleet.
            fields.update(last_duration_ms=int((time.monotonic() - started) * 1000),
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
        self.store.update_state(run_id, shard=self.shard, **fields)

    # -- one chunk -----------------------------------------------------------------------
    def _collect_chunk(self, start: int, end: int, services: Dict[str, ServiceUsage], book,
                       report: RunReport, matchers: Sequence[str] = ("",), record_gaps: bool = True) -> List[List[int]]:
        """Collect [start, end): minutes, rollups, period usage and checkpoints. Returns the
        stretches of the window in which Prometheus observed none of the known series."""
        window = self.read_window(start, end, services, report, matchers)
        minutes = window.usage.minutes()
        report.minutes_written += self.store.put_buckets("1m", minutes)
        by_service: Dict[str, List[BucketUsage]] = {}
        for bucket in minutes:
            by_service.setdefault(bucket.service, []).append(bucket)
        touched = set(by_service) | set(window.checkpoints)
        for service in touched:
            buckets = by_service.get(service, [])
            known = services.get(service)
            if known is None:
                first = buckets[0].start if buckets else window.first_sample_minute.get(service, start)
                services[service] = ServiceUsage.first_seen_at(service, first, last_active=first)
            if buckets:
                item = services[service]
                item.last_active = max(int(item.last_active), buckets[-1].start)
                item.first_seen = min(int(item.first_seen), buckets[0].start)
        self._write_rollups(start, end, services, minutes)
        changed = []
        for service in touched:
            item = self._period_usage(services[service], by_service.get(service, []), book, start, end)
            checkpoint = window.checkpoints.get(service)
            if checkpoint is not None:
                item.previous_checkpoint, item.previous_checkpoint_at = window.baselines[service].pack(), start
                item.checkpoint, item.checkpoint_at = checkpoint.pack(), end
            if self.sharded:
                item.shard = self.shard
            changed.append(item)
        self.store.put_services(changed)
        if not record_gaps:
            return []
        return window.unobserved(start, end, bool(services), self.settings.unobserved_gap_minutes)

    def read_window(self, start: int, end: int, services: Dict[str, ServiceUsage], report: RunReport,
                    matchers: Sequence[str] = ("",)) -> "Window":
        """Exact per-minute bytes (and traffic statistics) in [start, end), with each service's
        checkpoint after the window where it changed. One query per label matcher (a shard's
        group of services), each answer processed and dropped before the next is read."""
        s = self.settings
        window = Window()
        # Samples that arrived after their minute was final are looked for this far back (they
        # count in the window's first minute); not before collection began, which nothing precedes.
        read_from = start - s.late_sample_seconds if services else start
        seen = 0
        for matcher in matchers:
            selector = shards.with_matcher(kong.bandwidth_selector(s.kong_schema), matcher)
            seen += self._read_bandwidth(selector, read_from, start, end, services, window, report)
        report.series_seen = max(report.series_seen, seen)
        if s.collect_traffic_stats:
            for matcher in matchers:
                self._read_stats(start, end, window.usage, report, matcher)
        return window

    def _read_bandwidth(self, selector: str, read_from: int, start: int, end: int,
                        services: Dict[str, ServiceUsage], window: "Window", report: RunReport) -> int:
        s = self.settings
        unknown = []  # series the collector has no checkpoint of: first seen now
        seen = 0
        for one in self._dedupe_replicas(self.prometheus.raw_samples(selector, read_from, end)):
            try:
                key = kong.bandwidth_key(one.labels)
            except BadSample as e:
                report.quarantine(one.labels, str(e))
                continue
            seen += 1
            schema = kong.detect_schema(one.labels)
            if schema not in report.schemas:
                report.schemas.append(schema)
            baseline = window.baseline(key.service, services, start)
            sid = series_id(self._strip_replicas(one.key))
            reading = baseline.readings.get(sid)
            if reading is None:
                unknown.append((key, sid, one))
                continue
            samples = [(ts, v) for ts, v in one.samples if round(ts * 1000) > reading.at_ms]
            window.count(key, sid, reading.value, samples, start, one.labels, report)
        if unknown:
            # First sight: the last value Prometheus holds from before the window is the baseline
            # (none: the series was born inside it, so its first value counts). The late-sample
            # look-back is for checkpointed series only: without a checkpoint the collector cannot
            # tell a late sample from one it already counted.
            history = self.prometheus.last_values(selector, start, s.series_lookback_seconds)
            history = {self._strip_replicas(k): v for k, v in history.items()}
            for key, sid, one in unknown:
                samples = [(ts, v) for ts, v in one.samples if ts >= start]
                previous = history.get(self._strip_replicas(one.key))
                if previous is not None and not (math.isfinite(previous) and previous >= 0):
                    # Counting from zero would count its whole lifetime: wait for a valid value.
                    report.quarantine(one.labels, f"its last value before the window is {previous!r}, "
                                                  "not a byte counter")
                    continue
                window.count(key, sid, previous, samples, start, one.labels, report)
        return seen

    def _read_stats(self, start: int, end: int, acc: MinuteAccumulator, report: RunReport, matcher: str = "") -> None:
        """Request counts and latency histograms; approximate by nature, so baselined on
        Prometheus history rather than on the checkpoint."""
        requests = shards.with_matcher(kong.REQUESTS_SELECTOR, matcher)
        for labels, per_minute in self._deltas(requests, start, end, report):
            if labels.get("service") and labels.get("code"):
                acc.add_status(labels["service"], labels["code"], per_minute)
        for selector, part in ((kong.LATENCY_BUCKET_SELECTOR, "buckets"), (kong.LATENCY_SUM_SELECTOR, "sum"),
                               (kong.LATENCY_COUNT_SELECTOR, "count")):
            selector = shards.with_matcher(selector, matcher)
            for labels, per_minute in self._deltas(selector, start, end, report, integer=part != "sum"):
                if labels.get("service") and (part != "buckets" or labels.get("le")):
                    acc.add_latency(labels["service"], part, per_minute, labels.get("le"))

    def _deltas(self, selector: str, start: int, end: int, report: RunReport, integer: bool = True):
        """(labels, per-minute increase) for every valid series of ``selector`` in the window."""
        previous = self.prometheus.last_values(selector, start, self.settings.series_lookback_seconds)
        previous = {self._strip_replicas(k): v for k, v in previous.items()}
        for one in self._dedupe_replicas(self.prometheus.raw_samples(selector, start, end)):
            try:
                yield one.labels, series_deltas(previous.get(self._strip_replicas(one.key)), one.samples, integer)
            except BadSample as e:
                report.quarantine(one.labels, str(e))

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

    def _align_periods(self, services: Dict[str, ServiceUsage], book, at: int) -> None:
        """Give every service item the period its quota counts now, where a quota changed its
        period kind or billing day: summed from storage once here, so readers (the services
        overview, the alerts function) never have to."""
        changed = []
        for item in services.values():
            quota = book.quota_for(item.service)
            if not item.counts_cycle(quota.period, quota.anchor_day) and int(item.period_end) > 0:
                usage = usage_in(self.store, item, period_at(quota.period, at, quota.anchor_day))
                item.period_kind, item.period_anchor = quota.period, quota.anchor_day
                item.period_start, item.period_end = usage.period.start, usage.period.end
                item.ingress, item.egress, item.total = usage.ingress, usage.egress, usage.total
                changed.append(item)
        if changed:
            self.store.put_services(changed)

    def _write_rollups(self, start: int, end: int, services: Dict[str, ServiceUsage],
                       minutes: List[BucketUsage]) -> None:
        """Recompute every coarser rollup this chunk completed, from the next finer level: the
        parts this chunk just wrote from memory, the others read back from the table."""
        written = {("1m", b.service, b.start): b for b in minutes}
        for finer, level in zip(LEVEL_ORDER, LEVEL_ORDER[1:]):
            size, finer_size = LEVELS[level], LEVELS[finer]
            bucket_end = floor(start, size) + size
            while bucket_end <= end:
                bucket_start = bucket_end - size
                active = [name for name, item in services.items() if int(item.last_active) >= bucket_start
                          and int(item.first_seen) < bucket_end]
                if active:
                    keys = [(name, t) for name in active for t in range(bucket_start, bucket_end, finer_size)]
                    parts = self.store.get_buckets(finer, [k for k in keys if (finer, *k) not in written])
                    parts.update({k: written[(finer, *k)] for k in keys if (finer, *k) in written})
                    rollups = []
                    for name in active:
                        found = [parts[(name, t)] for t in range(bucket_start, bucket_end, finer_size)
                                 if (name, t) in parts]
                        if found:
                            rollups.append(sum_buckets(name, bucket_start, found))
                    self.store.put_buckets(level, rollups)
                    written.update({(level, b.service, b.start): b for b in rollups})
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


QUARANTINE_SHOWN = 50  # entries kept in the collector state; the count covers them all
CATCH_ALL_BATCH = 1000  # unassigned services one catch-all invocation counts (about a fixed shard's load)


def quarantine_entry(labels: Dict[str, str]) -> str:
    """A series' labels as text, bounded (a label may be thousands of characters)."""
    text = ",".join(f"{k}={v!r}" for k, v in sorted(labels.items()))
    return text[:300] + ("..." if len(text) > 300 else "")


def merge_gaps(gaps: List[List[int]]) -> List[List[int]]:
    merged: List[List[int]] = []
    for a, b in sorted(gaps):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


class Window:
    """What one chunk read: minute usage, the checkpoints it began from and the ones that changed."""

    def __init__(self) -> None:
        self.usage = MinuteAccumulator()
        self.baselines: Dict[str, Checkpoint] = {}
        self.checkpoints: Dict[str, Checkpoint] = {}  # only those that changed
        self.observed_minutes: Set[int] = set()
        self.first_sample_minute: Dict[str, int] = {}

    def baseline(self, service: str, services: Dict[str, ServiceUsage], start: int) -> Checkpoint:
        if service not in self.baselines:
            self.baselines[service] = baseline_for_chunk(services.get(service), start) or Checkpoint()
        return self.baselines[service]

    def count(self, key: kong.BandwidthKey, sid: bytes, previous: Optional[float], samples, start: int,
              labels: Dict[str, str], report: RunReport) -> None:
        """Add one series' increase since ``previous``; a sample that arrived after its minute was
        final counts in the window's first minute. A bad series is quarantined, whole."""
        try:
            per_minute = series_deltas(previous, samples)
        except BadSample as e:
            report.quarantine(labels, str(e))
            return
        placed: Dict[int, int] = {}
        for minute, nbytes in per_minute.items():
            placed[max(minute, start)] = placed.get(max(minute, start), 0) + nbytes
        self.usage.add(key.service, key.route, key.direction, placed)
        self.observed_minutes.update(floor_minute(ts) for ts, _ in samples if ts >= start)
        if samples:
            self.first_sample_minute.setdefault(key.service, max(floor_minute(samples[0][0]), start))
            ts, value = samples[-1]
            baseline = self.baselines.setdefault(key.service, Checkpoint())
            old = baseline.readings.get(sid)
            # A counter first seen at zero needs no checkpoint: counting it from zero is right.
            if (old.value != value) if old is not None else value != 0:
                checkpoint = self.checkpoints.setdefault(key.service, baseline.copy())
                checkpoint.readings[sid] = Reading(value, int(round(ts * 1000)))

    def unobserved(self, start: int, end: int, fleet_known: bool, minimum_minutes: int) -> List[List[int]]:
        """Stretches of at least ``minimum_minutes`` in which no known series had a sample."""
        if not (fleet_known or self.baselines):
            return []
        stretches, run_start = [], None
        for minute in range(start, end + MINUTE, MINUTE):
            quiet = minute < end and minute not in self.observed_minutes
            if quiet and run_start is None:
                run_start = minute
            elif not quiet and run_start is not None:
                if minute - run_start >= minimum_minutes * MINUTE:
                    stretches.append([run_start, minute])
                run_start = None
        return stretches
