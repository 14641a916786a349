"""Read one chunk's window from Prometheus: exact per-minute bytes and each service's checkpoint.

Bytes are counted from the collector's checkpoint (checkpoint.py), not from Prometheus history,
so nothing is counted twice or lost; traffic statistics (requests, latency) are approximate by
nature and baselined on Prometheus history.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Set

from chalicelib.collect import gateways, kong, shards
from chalicelib.collect.checkpoint import Checkpoint, Reading, baseline_for_chunk, series_id
from chalicelib.collect.deltas import MinuteAccumulator, series_deltas
from chalicelib.collect.plan import Services
from chalicelib.collect.report import RunReport
from chalicelib.core.errors import BadSample
from chalicelib.core.names import DEFAULT_WORKSPACE, qualified, workspace_and_name
from chalicelib.core.timeutil import MINUTE, floor_minute


class Window:
    """What one chunk read: minute usage, the checkpoints it began from and the ones that changed."""

    def __init__(self) -> None:
        self.usage = MinuteAccumulator()
        self.baselines: Dict[str, Checkpoint] = {}
        self.checkpoints: Dict[str, Checkpoint] = {}  # only those that changed
        self.observed_minutes: Set[int] = set()
        self.first_sample_minute: Dict[str, int] = {}

    def baseline(self, service: str, services: Services, start: int) -> Checkpoint:
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
            placed[max(minute, start)] = placed.get(max(minute, start), 0) + int(nbytes)
        self.usage.add(key.service, key.route, key.direction, placed, key.consumer)
        self.observed_minutes.update(floor_minute(ts) for ts, _ in samples if ts >= start)
        if samples:
            self.first_sample_minute.setdefault(key.service, max(floor_minute(samples[0][0]), start))
            self._advance_checkpoint(key.service, sid, samples[-1])

    def _advance_checkpoint(self, service: str, sid: bytes, last_sample) -> None:
        ts, value = last_sample
        baseline = self.baselines.setdefault(service, Checkpoint())
        old = baseline.readings.get(sid)
        # A counter first seen at zero needs no checkpoint: counting it from zero is right.
        if (old.value != value) if old is not None else value != 0:
            checkpoint = self.checkpoints.setdefault(service, baseline.copy())
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


class WindowReader:
    """Prometheus -> Window, one query per label matcher (a shard's group of services), each
    answer processed and dropped before the next is read."""

    def __init__(self, prometheus, settings):
        self.prometheus = prometheus
        self.settings = settings

    def read(self, start: int, end: int, services: Services, report: RunReport,
             matchers: Sequence[str] = ("",)) -> Window:
        """Exact per-minute bytes (and traffic statistics) in [start, end), with each service's
        checkpoint after the window where it changed."""
        s = self.settings
        window = Window()
        # Samples that arrived after their minute was final are looked for this far back (they
        # count in the window's first minute); not before collection began, which nothing precedes.
        read_from = start - s.late_sample_seconds if services else start
        seen = 0
        # One query per gateway source and matcher: no answer holds two series with one label set.
        for gateway in gateways.configured(s):
            for source in gateway.sources(s):
                for matcher in matchers:
                    selector = shards.with_matcher(source.selector, gateway.shard_matcher(matcher))
                    seen += self._read_bandwidth(gateway, source, selector, read_from, start, end, services,
                                                 window, report, matcher)
        report.series_seen = max(report.series_seen, seen)
        if s.collect_traffic_stats and "kong" in s.gateways:  # Kong's request and latency series only
            for matcher in matchers:
                self._read_stats(start, end, window.usage, report, matcher)
        return window

    def _read_bandwidth(self, gateway: gateways.Gateway, source: gateways.Source, selector: str, read_from: int,
                        start: int, end: int, services: Services, window: Window, report: RunReport,
                        matcher: str = "") -> int:
        unknown = []  # series the collector has no checkpoint of: first seen now
        seen = 0
        default_only = shards.selects_only_the_default_workspace(matcher)
        for one in self._dedupe_replicas(self.prometheus.raw_samples(selector, read_from, end)):
            try:
                key = gateway.key(one.labels, source)
            except BadSample as e:
                report.quarantine(one.labels, str(e))
                continue
            if default_only and workspace_and_name(key.service)[0] != DEFAULT_WORKSPACE:
                continue  # the same name in another workspace: another service, another shard's
            seen += 1
            report.saw_schema(gateway.schema(one.labels))
            sid = series_id(gateway.identity(self._strip_replicas(one.key), source))
            reading = window.baseline(key.service, services, start).readings.get(sid)
            if reading is None:
                unknown.append((key, sid, one))
                continue
            samples = [(ts, v) for ts, v in one.samples if round(ts * 1000) > reading.at_ms]
            window.count(key, sid, reading.value, samples, start, one.labels, report)
        if unknown:
            self._count_first_seen(selector, start, unknown, window, report)
        return seen

    def _count_first_seen(self, selector: str, start: int, unknown, window: Window, report: RunReport) -> None:
        """First sight: the last value Prometheus holds from before the window is the baseline
        (none: the series was born inside it, so its first value counts). The late-sample
        look-back is for checkpointed series only: without a checkpoint the collector cannot
        tell a late sample from one it already counted."""
        history = self.prometheus.last_values(selector, start, self.settings.series_lookback_seconds)
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

    def _read_stats(self, start: int, end: int, acc: MinuteAccumulator, report: RunReport, matcher: str = "") -> None:
        """Request counts and latency histograms; approximate by nature, so baselined on
        Prometheus history rather than on the checkpoint."""
        requests = shards.with_matcher(kong.REQUESTS_SELECTOR, matcher)
        for labels, per_minute in self._deltas(requests, start, end, report, matcher):
            if labels.get("service") and labels.get("code"):
                acc.add_status(qualified(labels.get("workspace", ""), labels["service"]), labels["code"], per_minute)
        for selector, part in ((kong.LATENCY_BUCKET_SELECTOR, "buckets"), (kong.LATENCY_SUM_SELECTOR, "sum"),
                               (kong.LATENCY_COUNT_SELECTOR, "count")):
            selector = shards.with_matcher(selector, matcher)
            for labels, per_minute in self._deltas(selector, start, end, report, matcher, integer=part != "sum"):
                if labels.get("service") and (part != "buckets" or labels.get("le")):
                    acc.add_latency(qualified(labels.get("workspace", ""), labels["service"]), part, per_minute,
                                    labels.get("le"))

    def _deltas(self, selector: str, start: int, end: int, report: RunReport, matcher: str = "", integer: bool = True):
        """(labels, per-minute increase) for every valid series of ``selector`` in the window
        (of the shard's services: not another workspace's same name)."""
        previous = self.prometheus.last_values(selector, start, self.settings.series_lookback_seconds)
        previous = {self._strip_replicas(k): v for k, v in previous.items()}
        default_only = shards.selects_only_the_default_workspace(matcher)
        for one in self._dedupe_replicas(self.prometheus.raw_samples(selector, start, end)):
            if default_only and one.labels.get("workspace", "") not in ("", DEFAULT_WORKSPACE):
                continue
            try:
                yield one.labels, series_deltas(previous.get(self._strip_replicas(one.key)), one.samples, integer)
            except BadSample as e:
                report.quarantine(one.labels, str(e))

    def _strip_replicas(self, key):
        drop = set(self.settings.replica_labels)
        return tuple(kv for kv in key if kv[0] not in drop) if drop else key

    def _dedupe_replicas(self, series: Iterable):
        """With HA Prometheus pairs, keep one replica's copy of each series (the first by name)."""
        if not self.settings.replica_labels:
            return series
        chosen: Dict[tuple, object] = {}
        for one in sorted(series, key=lambda s: s.key):
            chosen.setdefault(self._strip_replicas(one.key), one)
        return list(chosen.values())
