"""Compute and write what one chunk's window adds up to: minute items, the rollups the chunk
completed, each active service's usage in its current quota period and its new checkpoint, and
each active consumer's usage in its period (collect/consumers.py: every CONSUMER_WRITE_MINUTES,
and with a quota also at the even minute its bytes may reach a threshold).

Values are absolute and keys deterministic, so writing a retried chunk again changes nothing.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from chalicelib.collect import consumers as consumer_periods
from chalicelib.collect.checkpoint import pack_with_previous
from chalicelib.collect.plan import Role, Services
from chalicelib.collect.window import Window
from chalicelib.core.models import ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.core.quotas import QuotaSnapshot
from chalicelib.core.timeutil import LEVEL_ORDER, LEVELS, floor
from chalicelib.core.usage import BucketUsage, sum_buckets, usage_in


class ChunkWriter:
    def __init__(self, store, role: Role):
        self.store = store
        self.role = role
        self.consumers = consumer_periods.ConsumerPeriods(store, role.shard, role.settings.shard_count)
        # Where the last chunk that wrote every consumer ended (the collector's state keeps it).
        self.consumers_through: Optional[int] = None
        # Minute items the current chunk read back for its rollups: the consumers' read-back reuses them.
        self.minutes_read: Dict[Tuple[str, int], BucketUsage] = {}

    def write(self, window: Window, start: int, end: int, services: Services, snapshot: QuotaSnapshot,
              newcomers: bool = False, fresh: Iterable[str] = ()) -> int:
        """Write the chunk [start, end); returns the minute items written. Services first seen
        in it join ``services``. ``newcomers``: a pass over services this shard did not count
        before ``start`` (a fixed shard's catch-up); ``fresh``: services taken over at this chunk
        (their earlier minutes were counted by another shard)."""
        consumer_minutes = window.usage.consumer_minutes()
        always = newcomers or self.role.flushes_consumers_every_chunk
        widest = max((len(c) for _, _, c in consumer_minutes), default=0)
        every = self.role.settings.consumer_write_minutes
        flush = consumer_periods.EVERYONE if always else consumer_periods.flush_mode(start, end, widest, every, snapshot)
        self.minutes_read = {}  # filled by this chunk's rollups
        # Made before this chunk moves the services' last active minutes.
        read_back = None if always or not flush else consumer_periods.reader(self.store, services, set(fresh),
                                                                             self.minutes_read)
        estimate = None if always or not flush else consumer_periods.estimator(self.store, services, set(fresh),
                                                                               self.minutes_read)
        minutes = window.usage.minutes()
        written = self.store.put_buckets("1m", minutes)
        by_service: Dict[str, List[BucketUsage]] = {}
        for bucket in minutes:
            by_service.setdefault(bucket.service, []).append(bucket)
        touched = set(by_service) | set(window.checkpoints)
        for service in touched:
            note_activity(services, service, by_service.get(service, []), window, start)
        self.write_rollups(start, end, services, minutes)
        changed = []
        for service in touched:
            item = self.period_usage(services[service], by_service.get(service, []), snapshot, end)
            checkpoint = window.checkpoints.get(service)
            if checkpoint is not None:
                item.checkpoint, item.previous_checkpoint = pack_with_previous(checkpoint, window.baselines[service])
                item.checkpoint_at, item.previous_checkpoint_at = end, start
            self.role.own(item)
            changed.append(item)
        self.store.put_services(changed)
        if flush:
            since = consumer_periods.counted_before(start, every, self.consumers_through)
            self.consumers.flush(flush, consumer_periods.by_consumer(consumer_minutes), read_back, snapshot,
                                 start, end, since, estimate)
            if flush == consumer_periods.EVERYONE and not newcomers:
                self.consumers_through = end
        return written

    def write_rollups(self, start: int, end: int, services: Services, minutes: List[BucketUsage]) -> None:
        """Recompute every coarser rollup this chunk completed, from the next finer level: the
        parts this chunk just wrote from memory, the others read back from the table."""
        written = {("1m", b.service, b.start): b for b in minutes}
        for finer, level in zip(LEVEL_ORDER, LEVEL_ORDER[1:]):
            size = LEVELS[level]
            bucket_end = floor(start, size) + size
            while bucket_end <= end:
                rollups = self._rollups(finer, level, bucket_end - size, services, written)
                if rollups is not None:
                    self.store.put_buckets(level, rollups)
                    written.update({(level, b.service, b.start): b for b in rollups})
                bucket_end += size

    def _rollups(self, finer: str, level: str, bucket_start: int, services: Services, written: dict):
        """The ``level`` buckets starting at ``bucket_start`` of the services active in them
        (None: no service was)."""
        bucket_end, finer_size = bucket_start + LEVELS[level], LEVELS[finer]
        active = [name for name, item in services.items() if int(item.last_active) >= bucket_start
                  and int(item.first_seen) < bucket_end]
        if not active:
            return None
        keys = [(name, t) for name in active for t in range(bucket_start, bucket_end, finer_size)]
        parts = self.store.get_buckets(finer, [k for k in keys if (finer, *k) not in written])
        if finer == "1m":
            self.minutes_read.update(parts)
        parts.update({k: written[(finer, *k)] for k in keys if (finer, *k) in written})
        rollups = []
        for name in active:
            found = [parts[(name, t)] for t in range(bucket_start, bucket_end, finer_size) if (name, t) in parts]
            if found:
                rollups.append(sum_buckets(name, bucket_start, found))
        return rollups

    def period_usage(self, item: ServiceUsage, buckets: List[BucketUsage], snapshot: QuotaSnapshot, end: int) -> ServiceUsage:
        """Set the service's usage in its current quota period, absolutely, from the stored
        figure and this chunk's minutes (those after ``through`` only, so a retry adds nothing)."""
        quota = snapshot.quota_for(item.service)
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
                self._start_period(item, period, kind, anchor)
            item.ingress = int(item.ingress) + bucket.ingress
            item.egress = int(item.egress) + bucket.egress
            counted = True
        item.total = int(item.ingress) + int(item.egress)
        item.through = max(through, end)
        return item

    def _start_period(self, item: ServiceUsage, period, kind: str, anchor: int) -> None:
        """A new period starts clean; at first sight, or when the quota's period changed, what
        is stored for the period counts."""
        base = usage_in(self.store, item, period)
        item.period_kind, item.period_anchor = kind, anchor
        item.period_start, item.period_end = period.start, period.end
        item.ingress, item.egress = base.ingress, base.egress

    def align_periods(self, services: Services, snapshot: QuotaSnapshot, at: int) -> None:
        """Give every service item the period its quota counts now, where a quota changed its
        period kind or billing day: summed from storage once here, so readers (the services
        overview, the alerts function) never have to."""
        changed = []
        for item in services.values():
            quota = snapshot.quota_for(item.service)
            if not item.counts_cycle(quota.period, quota.anchor_day) and int(item.period_end) > 0:
                usage = usage_in(self.store, item, period_at(quota.period, at, quota.anchor_day))
                item.period_kind, item.period_anchor = quota.period, quota.anchor_day
                item.period_start, item.period_end = usage.period.start, usage.period.end
                item.ingress, item.egress, item.total = usage.ingress, usage.egress, usage.total
                changed.append(item)
        if changed:
            self.store.put_services(changed)


def note_activity(services: Services, service: str, buckets: List[BucketUsage], window: Window, start: int) -> None:
    """A service first seen in the window joins ``services``; an active one's first and last
    active minutes move."""
    if service not in services:
        first = buckets[0].start if buckets else window.first_sample_minute.get(service, start)
        services[service] = ServiceUsage.first_seen_at(service, first, last_active=first)
    if buckets:
        item = services[service]
        item.last_active = max(int(item.last_active), buckets[-1].start)
        item.first_seen = min(int(item.first_seen), buckets[0].start)
