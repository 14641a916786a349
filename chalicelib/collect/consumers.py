"""Each consumer's usage in its current quota period (ConsumerUsage), from the minutes a chunk
counted: exact like a service's, at a fraction of the writes.

**Exactness.** A consumer item holds, per service, the bytes of the period and ``through``: the
end of the last minute of that service counted into it. A minute of service X is added to
consumer c only if it is not before c's entry for X says, and values are stored absolutely, so a
retried chunk, or the same window counted again for other services (the catch-all's deferred
batches, a fixed shard's newcomers), adds each (consumer, service, minute) exactly once. The
consumer's period total is the sum of its services'. A minute of another (earlier) period than
the item's is final already and skipped; a chunk that crosses into a new period stores the old
period's final figure first, so the alerts function sees its last crossing.

**Cost.** A consumer's item is not written every minute (issue 24: at most 0.5 WCU per active
consumer-minute on top of the service's writes, alerted within two minutes). A chunk *flushes*:

- **everyone** when it ends on a multiple of CONSUMER_WRITE_MINUTES (20 in AWS), covers two
  minutes or more, or has a minute with more consumers than a stored bucket keeps
  (usage.MAX_CONSUMERS: its stored bucket would not tell them apart any more);
- **the consumers with a quota that may have reached a threshold** when it ends on any other even
  minute: a quota's alerts and block follow within two minutes, and a consumer far from its next
  threshold (an alert's, or ``reject_at``) costs a read, not a write. The flush reads every
  shard's item of each consumer with a quota (its stored usage S) and adds this shard's unwritten
  minutes (d); it writes the consumer if S + N x d reaches the next threshold S has not (N: the
  shards, 1 unsharded), or if another fixed shard wrote the consumer since this one last did (it
  found it near). Unsharded that is exactly "its bytes reached the threshold". With N shards, none
  of which adds (threshold - S) / N, their shares together cannot reach it; a crossing split
  unevenly is stored by the next even minute, when the shards that did not write follow the one
  that did. The others are neither read nor written then.

A flush reads the items of the consumers it judges (BatchGet) and writes the changed ones. What
a consumer did before the chunk since it was last written is read back from the services' stored
minute buckets, only of the services that had traffic then (their ``last_active``): all of it
since the last multiple of CONSUMER_WRITE_MINUTES (every consumer's minutes before it are in its
item: that chunk flushed everyone), and the per-service guards skip what an item holds already.
To judge the consumers with a quota, a flush first reads the same stretch from the coarsest
rollups that tile it (``estimator``: at least each consumer's bytes, and the services they may be
in: a few items a service instead of one a minute), and reads the minutes only when one of them is
to be written, and only of the services its bytes may be in.
Forecast alerts are judged at the consumer's writes: at least every CONSUMER_WRITE_MINUTES.
Period boundaries are UTC midnights (multiples), so a period's last minute is always written by
the chunk that ends on it or contains it. Passes that count services the shard did not count
before (the catch-all shard, a fixed shard's catch-up of services handed to it) always flush and
never read back, and no minute of a service before this shard took it over (its ``shard_since``)
is read back: another shard counted it.

**Shards.** Each shard counts its own services, so one consumer's bytes come from several
shards. Each shard keeps its own item per consumer: shard 0 (and an unsharded collector) under sk
``<consumer>``, shard k >= 1 under ``<consumer>\\x1f<k>`` (a control character no consumer key
holds, so ``<consumer>`` and ``<consumer>\\x1f<k>`` sort next to each other and no name is
mistaken for another's shard item). No shard ever writes another's item; readers sum a
consumer's items over the configured shards (store.get_consumer). A service's entry moves with
the service from the catch-all's item to its fixed shard's (each counts its own minutes).

Known limits (documented in README): a consumer's quota that changes its period kind counts the
new period from the change on (a service's is summed again from storage); after SHARD_COUNT is
lowered, the removed shards' items are no longer summed; a consumer using more than
MAX_CONSUMER_SERVICES - 1 services has the rest counted in OTHER_SERVICES under one guard.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from chalicelib.core.models import ConsumerUsage, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.core.store import SHARD_SEPARATOR, decompose
from chalicelib.core.timeutil import LEVELS, MINUTE, floor
from chalicelib.core.usage import (ANONYMOUS_CONSUMER, MAX_CONSUMER_SERVICES, MAX_CONSUMERS, OTHER_CONSUMERS,
                                   OTHER_SERVICES, BucketUsage, consumer_usage_in, in_direction, stored_label)
NOT_CONSUMERS = (ANONYMOUS_CONSUMER, OTHER_CONSUMERS)

# (minute, service, ingress, egress) of one consumer
Minute = Tuple[int, str, int, int]
# read_back(first, end, only=None): the consumers' stored minutes [first, end) (of the services ``only``)
ReadBack = Callable[..., Dict[str, List[Minute]]]


EVERYONE, WITH_QUOTA = "everyone", "with quota"


def flush_mode(start: int, end: int, widest_minute: int, every_minutes: int, snapshot) -> Optional[str]:
    """Which consumers the chunk [start, end) writes: EVERYONE, WITH_QUOTA, or None (see the
    module docstring; no consumer has a quota: none at the even minutes)."""
    if end - start >= 2 * MINUTE or (end // MINUTE) % every_minutes == 0 or widest_minute > MAX_CONSUMERS:
        return EVERYONE
    quotas = bool(snapshot.consumer_quotas or snapshot.rules_for("consumer"))
    return WITH_QUOTA if (end // MINUTE) % 2 == 0 and quotas else None


def counted_before(start: int, every_minutes: int, recorded: Optional[int] = None) -> int:
    """Every consumer's minutes before this one are in its item: the last multiple of
    CONSUMER_WRITE_MINUTES (the chunk that ended on it, or contained it, flushed everyone), or the
    end of the last chunk that did, as the collector's state records it, if that is earlier (the
    setting was lowered since: nothing its earlier value left unwritten is lost)."""
    multiple = floor(start, every_minutes * MINUTE)
    return multiple if recorded is None else min(int(recorded), multiple)


def by_consumer(minutes: Iterable[Tuple[str, int, dict]]) -> Dict[str, List[Minute]]:
    """{consumer: [(minute, service, ingress, egress)]} from (service, minute, consumers map)."""
    found: Dict[str, List[Minute]] = {}
    for service, minute, consumers in minutes:
        for consumer, entry in (consumers or {}).items():
            consumer = stored_label(consumer)
            if consumer in NOT_CONSUMERS:
                continue
            ingress, egress = int(entry.get("ingress", 0)), int(entry.get("egress", 0))
            if ingress or egress:
                found.setdefault(consumer, []).append((minute, service, ingress, egress))
    return found


class ConsumerPeriods:
    """Adds minutes to consumer items and says which items to write (absolute, guarded)."""

    def __init__(self, store, shard: int, shard_count: int = 1):
        self.store = store
        self.shard = shard
        self.shard_count = max(1, shard_count)

    def flush(self, mode: str, chunk: Dict[str, List[Minute]], read_back: Optional[ReadBack], snapshot,
              start: int, end: int, since: int, estimate: Optional[Estimate] = None) -> int:
        """Add the consumers' minutes to their items of this shard and write the changed ones
        (``mode``: which consumers; ``read_back(first, end)``: the consumers of the stored minutes
        [first, end) before the chunk, None for a pass that reads nothing back; ``since``: every
        consumer's minutes before it are in its item, counted_before; ``estimate``: at least what
        each consumer did in a stretch before the chunk, to judge WITH_QUOTA without reading every
        minute). Returns how many items were written."""
        everyone: Dict[str, List[ConsumerUsage]] = {}  # WITH_QUOTA: the consumers written, every shard's items
        earlier = None if read_back is None or (mode == WITH_QUOTA and estimate is not None) else read_back(since, start)
        if mode == WITH_QUOTA:
            rough = estimate(since, start) if estimate is not None else _totals(earlier or {})
            everyone = self._near(chunk, rough, snapshot, start, since)
            if not everyone:
                return 0
            if earlier is None and read_back is not None:
                other = rough.get(OTHER_CONSUMERS, Rough())
                earlier = read_back(since, start, set().union(*(rough.get(c, other).services for c in everyone)))
            chunk = {c: found for c, found in chunk.items() if c in everyone}
            earlier = {c: found for c, found in (earlier or {}).items() if c in everyone}
        minutes = _merged(earlier or {}, chunk)
        if not minutes:
            return 0
        quotas = {c: snapshot.quota_for_consumer(c) for c in minutes}  # once each: rules are globs
        names = sorted(minutes)
        own_sk = {c: self.store.consumer_sk(c, self.shard) for c in names}
        stored = ({c: item for c in names for item in everyone.get(c, ()) if item.sk == own_sk[c]}
                  if mode == WITH_QUOTA else self.store.get_consumer_items(names, self.shard))
        changed: List[ConsumerUsage] = []
        for consumer, found in sorted(minutes.items()):
            item = stored.get(consumer)
            if item is None:
                first = min(m for m, *_ in found)
                item = ConsumerUsage.first_seen_at(consumer, first, last_active=first)
            item.sk = own_sk[consumer]
            if self.add(item, found, quotas[consumer], end):
                changed.append(item)
        return self.store.put_consumers(changed) if changed else 0

    def _near(self, chunk: Dict[str, List[Minute]], rough: Dict[str, Rough], snapshot,
              start: int, since: int) -> Dict[str, List[ConsumerUsage]]:
        """The consumers with a quota that this even minute writes, each with every shard's item of
        it: those whose bytes since ``since`` (at least ``rough`` of them, plus the chunk's) may
        take their usage to their next threshold, or that another shard found near (see the
        module docstring)."""
        quotas = {c: snapshot.quota_for_consumer(c) for c in (set(chunk) | set(rough)) - set(NOT_CONSUMERS)}
        names = sorted(c for c, quota in quotas.items() if quota.limit_bytes is not None)
        if not names:
            return {}
        everyone = self.store.get_consumers(names, self.shard_count)
        other = rough.get(OTHER_CONSUMERS, Rough())
        near = {}
        for consumer in names:
            quota, items = quotas[consumer], everyone.get(consumer, [])
            own = next((i for i in items if i.sk == self.store.consumer_sk(consumer, self.shard)), None)
            test = self._threshold_test(items, own, quota, start, since)
            added = rough.get(consumer, other).of(quota.direction) + sum(
                in_direction(quota.direction, i, e) for _, _, i, e in chunk.get(consumer, ()))
            if test is None or test.reached(added):
                near[consumer] = items
        return near

    def _threshold_test(self, items: List[ConsumerUsage], own: Optional[ConsumerUsage], quota, start: int,
                        since: int) -> Optional["NextThreshold"]:
        """Whether a consumer with a quota is written at this even minute, from every shard's item of
        it (``own``: this shard's): None (it is), or the test of what this shard adds
        (NextThreshold.reached)."""
        period = period_at(quota.period, start, quota.anchor_day)
        last_written = max(since, int(own.through) if own is not None else 0)
        stored = 0
        for item in items:
            if item.holds(period):
                stored += in_direction(quota.direction, int(item.ingress), int(item.egress))
            elif not item.precedes(period):
                return None  # a shard's item counts another cycle (the quota's changed): no sum to judge
            if item is not own and _shard_of(item) != 0 and int(item.through) > last_written:
                # Another fixed shard found it near a threshold since this one last wrote it: this
                # shard's share follows now (the catch-all, shard 0 of several, writes every chunk
                # anyway and says nothing).
                return None
        return NextThreshold(quota, stored, self.shard_count)

    def add(self, item: ConsumerUsage, found: List[Minute], quota, end: int) -> bool:
        """Add the minutes not counted yet to ``item`` (an old period's final figure is stored
        first, at once). Returns whether the item changed."""
        kind, anchor = quota.period, quota.anchor_day
        services = {name: dict(entry) for name, entry in _plain_map(item.services).items()}
        changed = False
        counted: Set[str] = set()  # the services whose minutes this call added
        for minute, service, ingress, egress in sorted(found):
            if item.counts_cycle(kind, anchor) and minute < int(item.period_start):
                continue  # a closed period's minute: counted (or final) already
            named = len(services) - (OTHER_SERVICES in services)
            name = service if service in services or named < MAX_CONSUMER_SERVICES - 1 else OTHER_SERVICES
            entry = services.get(name)
            if entry is not None and minute < int(entry.get("through", 0)):
                continue  # counted already (a retry, or another pass over this window)
            period = period_at(kind, minute, anchor)
            if not item.holds(period):
                if counted:  # the chunk crosses into a new period: store the old one's final figure
                    self._settle(item, services, counted, minute)
                    counted = set()
                    self.store.put_consumers([ConsumerUsage.from_raw_data(item.serialize())])
                # A new period starts from zero but keeps the names (and guards) of the services
                # seen before, so charts of earlier periods still know where to look.
                services = {n: {"ingress": 0, "egress": 0, "through": e.get("through", 0)} for n, e in services.items()}
                item.period_kind, item.period_anchor = kind, anchor
                item.period_start, item.period_end = period.start, period.end
                item.ingress = item.egress = 0
                entry = services.get(name)
            if entry is None:
                entry = services[name] = {"ingress": 0, "egress": 0, "through": 0}
            entry["ingress"] += ingress
            entry["egress"] += egress
            item.last_active = max(int(item.last_active), minute)
            item.first_seen = min(int(item.first_seen), minute)
            counted.add(name)
            changed = True
        if changed:
            self._settle(item, services, counted, end)
        return changed

    @staticmethod
    def _settle(item: ConsumerUsage, services: Dict[str, dict], counted: Set[str], through: int) -> None:
        """The item's totals from its services; those ``counted`` are counted up to ``through``
        (the others' guards stay: another pass over this window may still bring their minutes)."""
        for name in counted:
            services[name]["through"] = max(int(services[name].get("through", 0)), through)
        item.services = {name: dict(entry) for name, entry in services.items()}
        item.ingress = sum(e["ingress"] for e in services.values())
        item.egress = sum(e["egress"] for e in services.values())
        item.total = int(item.ingress) + int(item.egress)
        item.through = max(int(item.through), through)


class NextThreshold:
    """Whether the bytes one shard adds to a consumer may take its usage to the next threshold of
    its quota (an alert's, or the block's ``reject_at``) that its stored usage has not reached.

    Each of the N shards adds only its own share; if none adds (stored - threshold) / N or more,
    their shares together cannot reach it. One that does writes the consumer, and every other
    shard with bytes of it follows at the next even minute (ConsumerPeriods._threshold_test): a
    crossing split over several shards is stored within one more flush."""

    def __init__(self, quota, stored: int, shard_count: int):
        self.limit = quota.limit_bytes
        self.stored = stored
        self.shard_count = shard_count
        marks = list(quota.thresholds) + ([quota.reject_at] if quota.rejects else [])
        self.pending = [t for t in marks if stored * 100 < t * self.limit]

    def reached(self, added: int) -> bool:
        """Whether ``added`` bytes from this shard may reach a pending threshold."""
        projected = self.stored + self.shard_count * added
        return any(projected * 100 >= t * self.limit for t in self.pending)


def _shard_of(item: ConsumerUsage) -> int:
    _, separator, shard = item.sk.partition(SHARD_SEPARATOR)
    return int(shard) if separator else 0


def _totals(minutes: Dict[str, List[Minute]]) -> Dict[str, Rough]:
    totals: Dict[str, Rough] = {}
    for consumer, found in minutes.items():
        for _, service, ingress, egress in found:
            totals.setdefault(consumer, Rough()).add(service, ingress, egress)
    return totals


def _plain_map(value) -> Dict[str, dict]:
    if value is None:
        return {}
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    return {k: {kk: int(vv) for kk, vv in (v.as_dict() if hasattr(v, "as_dict") else v).items()}
            for k, v in value.items()}


def _merged(*parts: Dict[str, List[Minute]]) -> Dict[str, List[Minute]]:
    """The consumers' minutes of disjoint stretches, together."""
    merged: Dict[str, List[Minute]] = {}
    for part in parts:
        for consumer, found in part.items():
            merged.setdefault(consumer, []).extend(found)
    return merged


def reader(store, services: Mapping[str, ServiceUsage], exclude: Set[str],
           known: Optional[Mapping[Tuple[str, int], BucketUsage]] = None) -> ReadBack:
    """``read_back(first, end)``: the consumers of the stored minutes [first, end) of the services
    that had traffic then, as the services stand now (call before the chunk moves their last
    active minutes), less ``exclude``, and of each service only the minutes since its shard took
    it over (``shard_since``). Minute items in ``known`` (read already, by the rollups) are not
    read again."""
    active = [(name, int(item.first_seen), int(item.last_active), int(item.shard_since or 0))
              for name, item in services.items() if name not in exclude]

    def read_back(first: int, end: int, only: Optional[Set[str]] = None) -> Dict[str, List[Minute]]:
        keys = [(name, minute) for name, seen, last, since in active if only is None or name in only
                for minute in range(max(first, since, floor(seen, MINUTE)), min(end, last + MINUTE), MINUTE)]
        known_now = known or {}
        found = {key: known_now[key] for key in keys if key in known_now}
        missing = [key for key in keys if key not in known_now]
        if missing:
            found.update(store.get_buckets("1m", missing))
        return by_consumer((b.service, b.start, b.consumers) for b in found.values() if b.consumers)

    return read_back


@dataclass
class Rough:
    """At least a consumer's bytes in a stretch, and every service they may be in."""

    ingress: int = 0
    egress: int = 0
    services: Set[str] = field(default_factory=set)

    def add(self, service: str, ingress: int, egress: int) -> None:
        self.ingress, self.egress = self.ingress + ingress, self.egress + egress
        self.services.add(service)

    def of(self, direction: str) -> int:
        return in_direction(direction, self.ingress, self.egress)


Estimate = Callable[[int, int], Dict[str, Rough]]


def estimator(store, services: Mapping[str, ServiceUsage], exclude: Set[str],
              known: Optional[Mapping[Tuple[str, int], BucketUsage]] = None) -> Estimate:
    """``estimate(first, end)``: each consumer's bytes in [first, end) of the services that had
    traffic then (less ``exclude``), at least, and the services they may be in (Rough): read from
    the coarsest stored rollups that tile the range (a 5-minute, 15-minute or hour item for every
    such stretch instead of its minutes), and minute items only at its ragged ends. Bytes a rollup
    keeps only in OTHER_CONSUMERS (a stretch with more consumers than an item keeps) count for
    every consumer, as do all the bytes of one without consumer data (written before consumers were
    kept); OTHER_CONSUMERS's own entry holds those. What it adds up may include minutes a
    consumer's item counts already: enough to judge whether a consumer may be near a threshold,
    and to know which services' minutes to read for it, never to write its figure (``reader``
    reads that)."""
    active = [(name, int(item.first_seen), int(item.last_active)) for name, item in services.items()
              if name not in exclude]

    def estimate(first: int, end: int) -> Dict[str, Rough]:
        totals: Dict[str, Rough] = {}
        everyone = Rough()
        for lo, hi, level in decompose(first, end):
            size = LEVELS[level]
            keys = [(name, t) for name, seen, last in active for t in range(lo, hi, size)
                    if t <= last and t + size > floor(seen, MINUTE)]
            found = {k: known[k] for k in keys if known and level == "1m" and k in known}
            missing = [k for k in keys if k not in found]
            if missing:
                found.update(store.get_buckets(level, missing))
            for bucket in found.values():
                if bucket.consumers is None:  # part of it written before consumers were kept
                    everyone.add(bucket.service, bucket.ingress, bucket.egress)
                for consumer, entry in (bucket.consumers or {}).items():
                    target = everyone if consumer == OTHER_CONSUMERS else totals.setdefault(consumer, Rough())
                    target.add(bucket.service, int(entry.get("ingress", 0)), int(entry.get("egress", 0)))
        for rough in totals.values():
            rough.ingress, rough.egress = rough.ingress + everyone.ingress, rough.egress + everyone.egress
            rough.services |= everyone.services
        return totals | ({OTHER_CONSUMERS: everyone} if everyone.services else {})

    return estimate


# -- the listing's rankings (GET /v1/consumers?sort=usage|percent) ---------------------------------
RANKING_EVERY_SECONDS = 600
RANKING_PAGE = 100  # consumer keys per ranking item (~2 KB)
RANKED_ORDERS = ("usage", "percent")
# Up to this many consumers the ranking is refreshed at every run: one page each (4 writes), and a
# consumer new to a small fleet (a first deployment, `make run`) is listed within a minute, not ten.
RANKED_EVERY_RUN = RANKING_PAGE


def ranking_due(store, now: float) -> bool:
    meta = store.ranking_meta("usage")
    if meta is None:
        return True
    every = 0 if int(meta.count or 0) <= RANKED_EVERY_RUN else RANKING_EVERY_SECONDS
    return now - float(meta.ranked_at) >= every


def refresh_rankings(store, snapshot, now: float) -> int:
    """Rank every consumer by its usage and its percent of quota in the current period (busiest
    first; no quota last; ties by name) and store both rankings in pages: one read of every
    consumer item, about 2 x consumers / RANKING_PAGE writes. The values a listing shows are read
    fresh; only the order is as of ``ranked_at``. Returns the consumers ranked."""
    items: Dict[str, list] = {}
    for item in store.all_consumers():
        items.setdefault(item.consumer, []).append(item)
    usage_rows, percent_rows = [], []
    for consumer, found in items.items():
        quota = snapshot.quota_for_consumer(consumer)
        period = period_at(quota.period, now, quota.anchor_day)
        # Stored figures only (no bucket reads): an item of another cycle ranks as idle until the
        # collector writes it again.
        usage = consumer_usage_in(None, consumer, [i for i in found if i.holds(period) or i.precedes(period)], period).usage
        usage_rows.append((-usage.total, consumer))
        ratio = None if quota.limit_bytes is None else usage.of(quota.direction) / quota.limit_bytes
        percent_rows.append((ratio is None, -(ratio or 0), consumer))
    if not items:
        return 0  # nothing to rank (the listing says so without a ranking)
    store.put_ranking("usage", [c for _, c in sorted(usage_rows)], RANKING_PAGE, now)
    store.put_ranking("percent", [c for *_, c in sorted(percent_rows)], RANKING_PAGE, now)
    return len(items)
