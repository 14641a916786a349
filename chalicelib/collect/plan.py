"""A run's plan: which minutes it collects (``run_span``, in chunks) and, chunk by chunk, which
services it counts with which queries, from the shard's role (collect/shards.py).

Three roles, one interface, so the run itself has no shard branches:

- ``Unsharded`` (SHARD_COUNT = 1): the whole fleet, every series in one query per chunk;
- ``CatchAll`` (shard 0 of N > 1): the services no fixed shard has, found by name in each
  window, a bounded batch a run; it hands each one it counted to a fixed shard;
- ``FixedShard`` (1..N-1): its own services by name, plus those handed to it, counted from
  their hand-over.

A role only plans: it reads the store and Prometheus' label names, and says in a ``ChunkPlan``
what the chunk takes on; the run applies the plan (collector.py). Only the hand-over after a
chunk writes (the catch-all's assignment updates).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Set, Tuple

from chalicelib.collect import gateways, kong, shards
from chalicelib.core.models import ServiceUsage
from chalicelib.core.timeutil import MINUTE, floor_minute, iso

log = logging.getLogger(__name__)

CATCH_ALL_BATCH = 1000  # unassigned services one catch-all invocation counts (about a fixed shard's load)

Services = Dict[str, ServiceUsage]  # the items a run counts, by service name, with their checkpoints


@dataclass
class ChunkPlan:
    """What one chunk reads and which services it takes on before reading."""

    matchers: List[str]  # one query per label matcher; [""]: every series
    dropped: Set[str] = field(default_factory=set)  # no longer ours (taken by a fixed shard meanwhile)
    loaded: Services = field(default_factory=dict)  # the catch-all's newly met services, as stored
    # A fixed shard's newcomers, grouped by hand-over minute: counted alone from then to the chunk.
    handed_over: List[Tuple[int, Services]] = field(default_factory=list)
    taken_over: List[str] = field(default_factory=list)  # the "<minute>:<service>" entries they were
    deferred: int = 0  # the catch-all: unassigned services left for the next run of this window


class Role:
    """What differs between shards; the defaults are those of an unsharded collector."""

    shard = 0
    # Whether every chunk writes the consumers' items (collect/consumers.py): the catch-all counts
    # each service for one chunk only, before handing it over, so it never leaves a minute to read back.
    flushes_consumers_every_chunk = False

    def __init__(self, store, settings):
        self.store = store
        self.settings = settings

    def services(self) -> Services:
        """The services the run starts with, checkpoints included."""
        return {item.service: item for item in self.store.list_services(checkpoints=True)}

    def collection_start(self, start: int) -> int:
        """Where this shard's history begins, at its first run starting at ``start``."""
        return start

    def plan(self, start: int, end: int, services: Services) -> ChunkPlan:
        return ChunkPlan(matchers=[""])

    def hand_over(self, at: int, services: Services) -> None:
        """After a chunk ending at ``at``: give away what another shard counts from now on."""

    def own(self, item: ServiceUsage) -> None:
        """Mark an item as counted by this shard (its status and gaps are read from it)."""


class Unsharded(Role):
    pass


class CatchAll(Role):
    """Shard 0 of several. It starts with no service: chunk by chunk it loads the unassigned
    services Prometheus names in the window, never the whole table."""

    flushes_consumers_every_chunk = True

    def __init__(self, store, settings, prometheus):
        super().__init__(store, settings)
        self.prometheus = prometheus

    def services(self) -> Services:
        return {}

    def plan(self, start: int, end: int, services: Services) -> ChunkPlan:
        """The unassigned services Prometheus names in the window, by name, in bounded groups (a
        fleet met all at once, as on a first deployment, is read a batch at a time too), and the
        traffic that matched no service. Those not loaded yet are read from the store: new
        services have no item; services of a shard that was removed (SHARD_COUNT lowered) and
        those counted before sharding began have theirs, checkpoint included."""
        assigned = shards.assigned_names(self.store.assignments(self.settings.shard_count))
        named = set().union(*(gateway.service_names(self.prometheus, self.settings,
                                                     start - self.settings.late_sample_seconds, end - 0.001)
                              for gateway in gateways.configured(self.settings)))
        ours = set(services) - assigned
        unassigned = sorted(((set(named) - assigned) | ours) - {kong.UNMATCHED_SERVICE})
        batch = set(unassigned[:CATCH_ALL_BATCH])
        unloaded = (batch | {kong.UNMATCHED_SERVICE}) - ours
        loaded = {item.service: item for item in self.store.get_services(sorted(unloaded))} if unloaded else {}
        return ChunkPlan(matchers=shards.owned_matchers(batch) + [shards.UNMATCHED_MATCHER],
                         dropped=assigned & set(services), loaded=loaded,
                         deferred=max(0, len(unassigned) - CATCH_ALL_BATCH))

    def hand_over(self, at: int, services: Services) -> None:
        """Give every service counted up to ``at`` to its fixed shard."""
        by_shard: Dict[int, List[str]] = {}
        for name in list(services):
            if not shards.stays_in_catch_all(name):
                by_shard.setdefault(shards.shard_of(name, self.settings.shard_count), []).append(name)
        for target, names in sorted(by_shard.items()):
            self.store.hand_over(target, at, names)
            for name in names:
                del services[name]
            log.info("collector: %d services handed to shard %d from %s", len(names), target, iso(at))

    def own(self, item: ServiceUsage) -> None:
        item.shard = 0


class FixedShard(Role):
    """Shard 1..N-1: its own services, and those the catch-all handed to it."""

    def __init__(self, store, settings, shard: int):
        super().__init__(store, settings)
        self.shard = shard

    def services(self) -> Services:
        names = sorted(self.store.assignment(self.shard).services or ())
        return {item.service: item for item in self.store.get_services(names)}

    def collection_start(self, start: int) -> int:
        # It counts services the catch-all counted before: their history begins where the catch-all's does.
        first = self.store.state(0).collection_start
        return min(start, int(first)) if first is not None else start

    def plan(self, start: int, end: int, services: Services) -> ChunkPlan:
        """Its services, and first those handed to it by ``start``: the minutes from their
        hand-over to ``start`` are counted for them alone, so none is counted twice or missed."""
        due = [(at, name) for at, name in shards.parse_incoming(self.store.assignment(self.shard).incoming or ())
               if at <= start]
        newcomers = {item.service: item for item in self.store.get_services({name for _, name in due})} if due else {}
        handed: Dict[str, int] = {}  # when each was handed over: this shard reads back no minute before
        for at, name in due:
            handed[name] = min(at, handed.get(name, at))
        for item in newcomers.values():
            self.own(item)
            item.shard_since = handed[item.service]
        groups = [(at, {name: newcomers[name] for t, name in due if t == at and name in newcomers})
                  for at in sorted({at for at, _ in due})]
        return ChunkPlan(matchers=shards.owned_matchers(set(services) | set(newcomers)), handed_over=groups,
                         taken_over=[f"{at}:{name}" for at, name in due])

    def own(self, item: ServiceUsage) -> None:
        item.shard = self.shard


def role_for(store, settings, prometheus, shard: int) -> Role:
    """The role of ``shard`` under the configured SHARD_COUNT."""
    if not 0 <= shard < settings.shard_count:
        raise ValueError(f"shard {shard} is not one of 0..{settings.shard_count - 1} (SHARD_COUNT)")
    if settings.shard_count == 1:
        return Unsharded(store, settings)
    if shard == 0:
        return CatchAll(store, settings, prometheus)
    return FixedShard(store, settings, shard)



@dataclass(frozen=True)
class RunSpan:
    """The minutes one run collects, [start, end), from the shard's watermark to ``now - lag``."""

    start: int
    end: int
    collection_start: int
    first: bool  # the shard's first run: nothing collected before
    asked_from: int  # where the run would have started, had it not been too far back
    skipped: Optional[List[int]] = None  # [from, start): beyond MAX_BACKFILL_MINUTES, recorded as a gap

    def chunks(self, chunk_minutes: int) -> Iterator[Tuple[int, int]]:
        size = chunk_minutes * MINUTE
        for start in range(self.start, self.end, size):
            yield start, min(start + size, self.end)


def run_span(state, now: float, settings, role: Role) -> RunSpan:
    """The minutes a run at ``now`` collects, given the shard's state."""
    end = floor_minute(now - settings.collect_lag_seconds)
    if state.watermark is None:
        start = end - settings.initial_backfill_minutes * MINUTE
        collection_start = role.collection_start(start)
    else:
        start, collection_start = int(state.watermark), int(state.collection_start)
    # Longer ago than Prometheus keeps (or than we may backfill): the hole is recorded honestly.
    earliest = end - settings.max_backfill_minutes * MINUTE
    skipped = [start, earliest] if start < earliest else None
    return RunSpan(max(start, earliest), end, collection_start, state.watermark is None, start, skipped)
