"""Pushed usage: the adapter that counts pushed events exactly once, and reads their bytes.

Pushed bytes live apart from scraped ones: the collector writes its buckets (``<level>#...``)
with absolute values and would overwrite anything else in them, so pushed bytes have their own
bucket items under the service's usage partition (``pushed#<level>#...``, models.PushedBucket),
one per level (1m, 5m, 15m, 1h, 1d), each kept with ADD as events arrive. Readers add them to
the scraped ones (charts, period usage); nothing the collector does can touch them.

Counted once, whatever is retried or replayed, and never lost, in three steps per batch:

1. **record** the batch's valid events (one compressed item, ``PushBatch`` under
   ``PUSH_PENDING``), before anything else;
2. **claim** each event: a conditional put of its marker (``EventMarker``, keyed by the digest of
   (source, id), kept ``retention + 1`` days past the later of now and the event's time, so a replay
   after the marker expired is refused as too old instead of counted again). The put succeeds if
   there is no marker or the marker is this batch's own (a resumed batch claims its events again);
   otherwise the event is a duplicate. One write unit per event: the marker holds only the digest,
   the batch key and its expiry (~150 bytes). This is the whole cost of idempotency. The puts,
   16 in flight, go through chalicelib/core/claims.py (aiodynamo: half botocore's CPU a put);
3. **apply** the claimed events' bytes: summed per (service, level, bucket), cut into groups in
   a fixed order, each group written in one TransactWriteItems together with its ``PushApplied``
   marker (condition: not yet there). A group is applied entirely or not at all, and only once.
   Then the services' items are touched (the alerts function judges them again) and the record
   is deleted.

A crash anywhere leaves the record: the next push that meets one of its events as a duplicate,
or any push or scheduled run (chalicelib/schedule.py) once the record is older than
STALE_SECONDS, finishes it (claims again, applies the
groups not yet applied). The claimed set cannot change between the two runs (markers are claimed
before any group is applied, and a claimed marker is only ever this batch's), so the groups are
the same and none is applied twice. An import's batches go through the same steps at commit,
their stored batch item serving as the record (chalicelib/core/imports.py).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pynamodb.exceptions import PynamoDBException

from chalicelib.core.claims import MarkerClaims
from chalicelib.core.errors import StoreError
from chalicelib.core.events import UsageEvent
from chalicelib.core.models import (PUSH_PENDING_PK, PUSHED_SERVICES_PK, SERVICES_PK, CollectorState, EventMarker,
                                    PushApplied, PushBatch, PushedBucket, PushedService, ServiceUsage, collector_state_key, event_marker_key,
                                    is_condition_failure, push_applied_key, pushed_bucket_sk, pushed_pk, read_item)
from chalicelib.core.timeutil import DAY, LEVEL_ORDER, LEVELS, floor
from chalicelib.core.usage import MAX_CONSUMERS, MAX_ROUTES, OTHER_CONSUMERS, OTHER_ROUTES, BucketUsage, stored_label

log = logging.getLogger(__name__)

GROUP_ITEMS = 90  # bucket items per transaction (DynamoDB allows 100 actions, its marker included)
MAP_ENTRIES_PER_UPDATE = 40  # map keys one update sets: at ~75 characters each, under the 4 KB an expression may be
KNOWN_MAX_AGE_SECONDS = 60  # how long the list of pushed services is reused before it is read again
STALE_SECONDS = 120  # a recorded batch this old was left by a request that died (API timeout: 30 s)
RESUME_PER_PUSH = 3  # stale batches one push finishes, at most
APPLY_ATTEMPTS = 4
MAPS = {("routes", "ingress"): "routes_in", ("routes", "egress"): "routes_out",
        ("consumers", "ingress"): "consumers_in", ("consumers", "egress"): "consumers_out"}
_BOUNDS = {"routes": (MAX_ROUTES, OTHER_ROUTES), "consumers": (MAX_CONSUMERS, OTHER_CONSUMERS)}

ACCEPTED, DUPLICATE = "accepted", "duplicate"


def pack_events(events: Sequence[UsageEvent]) -> bytes:
    return zlib.compress(json.dumps([e.as_record() for e in events], separators=(",", ":")).encode(), 6)


def unpack_events(blob: bytes) -> List[UsageEvent]:
    return [UsageEvent.from_record(r) for r in json.loads(zlib.decompress(bytes(blob)))]


@dataclass
class Delta:
    """What a group adds to one pushed bucket item: totals and map entries (map, label, bytes)."""

    ingress: int = 0
    egress: int = 0
    entries: Dict[Tuple[str, str], int] = field(default_factory=dict)

    def add(self, event: UsageEvent) -> None:
        if event.direction == "ingress":
            self.ingress += event.bytes
        else:
            self.egress += event.bytes
        for kind, label in (("routes", event.route), ("consumers", event.consumer)):
            key = (MAPS[(kind, event.direction)], stored_label(label))
            self.entries[key] = self.entries.get(key, 0) + event.bytes


BucketKey = Tuple[str, str, int]  # (service, level, start)
Piece = Tuple[BucketKey, int, int, List[Tuple[Tuple[str, str], int]]]  # key, ingress, egress, entries


def deltas_of(events: Iterable[UsageEvent]) -> Dict[BucketKey, Delta]:
    """Each event's bytes in its minute and in every coarser bucket containing it."""
    deltas: Dict[BucketKey, Delta] = {}
    for event in events:
        for level in LEVEL_ORDER:
            key = (event.service, level, floor(event.minute, LEVELS[level]))
            deltas.setdefault(key, Delta()).add(event)
    return deltas


def groups_of(deltas: Dict[BucketKey, Delta]) -> List[List[Piece]]:
    """The transactions that apply ``deltas``, in a fixed order (the same events always give the
    same groups: a resumed batch skips exactly the groups already applied). An item whose map
    entries would not fit one update expression is cut into pieces, in different groups."""
    pieces: List[Piece] = []
    for key in sorted(deltas):
        delta = deltas[key]
        entries = sorted(delta.entries.items())
        chunks = [entries[i:i + MAP_ENTRIES_PER_UPDATE] for i in range(0, len(entries), MAP_ENTRIES_PER_UPDATE)] or [[]]
        for n, chunk in enumerate(chunks):
            pieces.append((key, delta.ingress if n == 0 else 0, delta.egress if n == 0 else 0, chunk))
    groups: List[List[Piece]] = []
    for piece in pieces:
        for group in groups:
            if len(group) < GROUP_ITEMS and all(p[0] != piece[0] for p in group):
                group.append(piece)
                break
        else:
            groups.append([piece])
    return groups


@dataclass
class PushOutcome:
    """The fate of each event given (ACCEPTED or DUPLICATE, in order), the groups this run applied
    (0 for those applied before) and the transactions it tried."""

    statuses: List[str]
    groups_applied: int = 0
    transactions: int = 0


class PushedUsage:
    def __init__(self, minute_ttl_days: int = 35, claims_in_flight: int = 16, monotonic=time.monotonic):
        self.minute_ttl_days = minute_ttl_days
        self.monotonic = monotonic
        self._known: Optional[Tuple[float, frozenset]] = None
        self._known_lock = threading.Lock()
        self.claims = MarkerClaims(claims_in_flight)
        self._ttl_seconds = {"1m": minute_ttl_days * DAY, "5m": 4 * minute_ttl_days * DAY,
                             "15m": 4 * minute_ttl_days * DAY}

    # -- reading -----------------------------------------------------------------------------
    def buckets(self, service: str, level: str, start: int, end: int) -> List[BucketUsage]:
        """Pushed buckets of ``level`` with start <= bucket start < end, in time order."""
        if end <= start:
            return []
        try:  # bucket starts are whole minutes: start <= t < end is t's minute <= end - 1's
            items = PushedBucket.query(pushed_pk(service), PushedBucket.sk.between(
                pushed_bucket_sk(level, start), pushed_bucket_sk(level, end - 1)))
            return [to_bucket(item) for item in items]
        except PynamoDBException as e:
            raise StoreError(f"reading pushed {level} usage of {service!r} failed: {e}") from e

    def may_have(self, service: str) -> bool:
        """Whether bytes were ever pushed for ``service``, from the list of pushed services read at
        most KNOWN_MAX_AGE_SECONDS ago (one query for the whole fleet, not one per service)."""
        with self._known_lock:
            if self._known is None or self.monotonic() - self._known[0] > KNOWN_MAX_AGE_SECONDS:
                try:
                    names = frozenset(item.sk for item in PushedService.query(PUSHED_SERVICES_PK))
                except PynamoDBException as e:
                    raise StoreError(f"listing pushed services failed: {e}") from e
                self._known = (self.monotonic(), names)
            return service in self._known[1]

    def period_bytes(self, service: str, start: int, end: int) -> Tuple[int, int]:
        """Pushed (ingress, egress) of a service in [start, end): quota periods are whole UTC days,
        so this is the day buckets' sum, one query of at most 31 small items."""
        ingress = egress = 0
        for bucket in self.buckets(service, "1d", floor(start, DAY), end):
            ingress, egress = ingress + bucket.ingress, egress + bucket.egress
        return ingress, egress

    # -- pushing -----------------------------------------------------------------------------
    def push(self, events: Sequence[UsageEvent], now: float, batch: Optional[str] = None) -> PushOutcome:
        """Count ``events`` (distinct identities, already judged valid) once each: record, claim,
        apply. Finishes batches left by requests that died when it meets one."""
        # Time first: the records of unfinished batches are then read oldest first (resume_stale).
        batch = batch or f"{int(now):011d}-{uuid.uuid4().hex}"
        if not events:
            return PushOutcome([])
        self._record(batch, events, now)
        outcome = self.apply(batch, events, now)
        self._forget(batch)
        duplicates = [e for e, s in zip(events, outcome.statuses) if s == DUPLICATE]
        self.resume_stale(now, owners_of=duplicates)
        return outcome

    def apply(self, batch: str, events: Sequence[UsageEvent], now: float) -> PushOutcome:
        """Claim and apply a recorded batch (again: every step is idempotent)."""
        statuses = self._claim(batch, events, now)
        claimed = [e for e, s in zip(events, statuses) if s == ACCEPTED]
        outcome = PushOutcome(statuses)
        for number, group in enumerate(groups_of(deltas_of(claimed))):
            applied, attempts = self._apply_group(batch, number, group, now)
            outcome.groups_applied += applied
            outcome.transactions += attempts
        self._touch({e.service for e in claimed}, min((e.minute for e in claimed), default=0), now)
        return outcome

    def resume_stale(self, now: float, owners_of: Sequence[UsageEvent] = ()) -> int:
        """Finish recorded batches whose request died: the owners of these duplicate events that
        are still recorded, and the oldest stale records. Returns how many were finished."""
        stale = []
        try:
            if owners_of:
                owners = {m.batch for m in EventMarker.batch_get([event_marker_key(e.digest) for e in owners_of][:100])}
                stale += [r for r in PushBatch.batch_get([(PUSH_PENDING_PK, b) for b in sorted(owners)][:100])
                          if r.created_at < now - STALE_SECONDS]
            # Keys start with the time, so the oldest come first: none stale among them, none at all.
            stale += [r for r in PushBatch.query(PUSH_PENDING_PK, limit=RESUME_PER_PUSH)
                      if r.created_at < now - STALE_SECONDS]
        except PynamoDBException as e:
            raise StoreError(f"looking for unfinished pushes failed: {e}") from e
        done = set()
        for record in stale[:RESUME_PER_PUSH * 2]:
            if record.sk in done:
                continue
            log.warning("pushed: finishing batch %s, left unfinished by a request that died", record.sk)
            self.apply(record.sk, unpack_events(record.events), now)
            self._forget(record.sk)
            done.add(record.sk)
        return len(done)

    # -- the steps ---------------------------------------------------------------------------
    def _record(self, batch: str, events: Sequence[UsageEvent], now: float) -> None:
        try:
            PushBatch(PUSH_PENDING_PK, batch, events=pack_events(events), created_at=int(now),
                      expires_at=_at(now + (self.minute_ttl_days + 1) * DAY)).save()
        except PynamoDBException as e:
            raise StoreError(f"recording {len(events)} pushed events failed: {e}") from e

    def _forget(self, batch: str) -> None:
        try:
            PushBatch(PUSH_PENDING_PK, batch).delete()
        except PynamoDBException as e:  # harmless: a later push finds it applied and deletes it
            log.warning("pushed: deleting the record of batch %s failed: %s", batch, e)

    def marker_expiry(self, event: UsageEvent, now: float) -> datetime:
        return _at(max(now, event.time) + (self.minute_ttl_days + 1) * DAY)

    def _claim(self, batch: str, events: Sequence[UsageEvent], now: float) -> List[str]:
        """Each event's conditional marker put: ACCEPTED if there was no marker or the marker is
        this batch's own, DUPLICATE otherwise. The puts go through chalicelib/core/claims.py, 16 in
        flight (a 1,000-event batch is 1,000 of them: our CPU per put is what a batch costs)."""
        meta = EventMarker.Meta
        EventMarker._get_connection()  # checks the models are bound
        items = []
        for event in events:
            pk, sk = event_marker_key(event.digest)
            items.append({"pk": pk, "sk": sk, "batch": batch,
                          "expires_at": int(self.marker_expiry(event, now).timestamp())})
        written = self.claims.put_unless(str(meta.table_name), str(meta.region), getattr(meta, "host", None),
                                         items, batch)
        return [ACCEPTED if put else DUPLICATE for put in written]

    def _apply_group(self, batch: str, number: int, group: List[Piece], now: float) -> Tuple[int, int]:
        """Apply one group unless it is applied already: (1 if applied now, transactions tried)."""
        applied_key = push_applied_key(batch, number)
        connection = PushedBucket._get_connection().connection
        table = str(PushedBucket.Meta.table_name)  # bound: _get_connection has checked
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            if read_item(PushApplied, applied_key, f"pushed group {number} of {batch}") is not None:
                return 0, attempt - 1
            existing = self._existing([piece[0] for piece in group])
            puts, updates = [], []
            for key, ingress, egress, entries in group:
                current = existing.get(key)
                entries = _bounded(entries, current)
                if current is None:
                    puts.append(self._new_item(table, key, ingress, egress, entries))
                else:
                    updates.append(_update(table, key, ingress, egress, entries))
            puts.append({"TableName": table, "Item": {"pk": {"S": applied_key[0]}, "sk": {"S": applied_key[1]},
                                                      "expires_at": {"N": str(int(now + (self.minute_ttl_days + 1) * DAY))}},
                         "ConditionExpression": "attribute_not_exists(pk)"})
            try:
                connection.transact_write_items([], [], puts, updates)
                return 1, attempt
            except PynamoDBException as e:
                # Someone else applied it (or created one of its items) meanwhile: look again.
                if attempt == APPLY_ATTEMPTS or not (is_condition_failure(e) or _is_conflict(e)):
                    raise StoreError(f"applying pushed group {number} of batch {batch} failed: {e}") from e
        return 0, APPLY_ATTEMPTS

    def _existing(self, keys: Sequence[BucketKey]) -> Dict[BucketKey, PushedBucket]:
        try:
            found = PushedBucket.batch_get([(pushed_pk(s), pushed_bucket_sk(level, start)) for s, level, start in keys])
            return {(item.service, item.level, int(item.start)): item for item in found}
        except PynamoDBException as e:
            raise StoreError(f"reading pushed buckets failed: {e}") from e

    def _new_item(self, table: str, key: BucketKey, ingress: int, egress: int, entries) -> dict:
        service, level, start = key
        item: Dict[str, dict] = {
                "pk": {"S": pushed_pk(service)}, "sk": {"S": pushed_bucket_sk(level, start)}, "service": {"S": service},
                "level": {"S": level}, "start": {"N": str(start)}, "ingress": {"N": str(ingress)},
                "egress": {"N": str(egress)}}
        for name in MAPS.values():
            item[name] = {"M": {label: {"N": str(n)} for (m, label), n in entries if m == name}}
        ttl = self._ttl_seconds.get(level)
        if ttl:
            item["expires_at"] = {"N": str(start + ttl)}
        return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}

    def _touch(self, services: Iterable[str], first_minute: int, now: float) -> None:
        """Make sure each service has its item (a service only ever pushed is listed and charted
        too) and mark it changed, so the stream brings it to the alerts function.

        An item made here has ``through`` (up to where the collector has counted the service) at
        the catch-all collector's watermark or before: the collector skips the minutes before a
        service's ``through`` as already counted, so a later one would lose scraped bytes."""
        services = sorted(services)
        if not services:
            return
        state = read_item(CollectorState, collector_state_key(0), "collector state")
        watermark = int(state.watermark) if state is not None and state.watermark is not None else 0
        through = min(first_minute, watermark)
        for service in services:
            attribute = ServiceUsage
            try:
                ServiceUsage(SERVICES_PK, service).update(actions=[
                    attribute.service.set(attribute.service | service),
                    attribute.first_seen.set(attribute.first_seen | first_minute),
                    attribute.last_active.set(attribute.last_active | first_minute),
                    attribute.through.set(attribute.through | through),
                    attribute.period_kind.set(attribute.period_kind | "month"),
                    attribute.period_start.set(attribute.period_start | 0),
                    attribute.period_end.set(attribute.period_end | 0),
                    attribute.pushed_at.set(now),
                ])
                PushedService(PUSHED_SERVICES_PK, service, pushed_at=int(now)).save()
            except PynamoDBException as e:
                raise StoreError(f"marking pushed bytes on service {service!r} failed: {e}") from e


def to_bucket(item: PushedBucket) -> BucketUsage:
    """A pushed item as the domain's bucket (routes and consumers per direction)."""
    bucket = BucketUsage(item.service, int(item.start))
    for (kind, direction), name in MAPS.items():
        counts = getattr(item, name) or {}
        counts = counts.as_dict() if hasattr(counts, "as_dict") else counts
        target = bucket.routes if kind == "routes" else bucket.consumers
        assert target is not None  # a new bucket has a consumer map
        for label, n in counts.items():
            entry = target.setdefault(label, {"ingress": 0, "egress": 0})
            entry[direction] += int(n)
    return bucket


def _bounded(entries, current: Optional[PushedBucket]):
    """Map entries as the item may hold them: a label new to a map already at its bound (see
    usage.MAX_ROUTES) is counted under the map's "other" entry, so the item stays under 400 KB."""
    result: Dict[Tuple[str, str], int] = {}
    sizes: Dict[str, set] = {}
    for (name, label), n in entries:
        kind = "routes" if name.startswith("routes") else "consumers"
        limit, other = _BOUNDS[kind]
        known = sizes.setdefault(name, set(_keys(getattr(current, name, None)) if current is not None else ()))
        if label not in known and len(known) >= limit - 1:
            label = other
        known.add(label)
        result[(name, label)] = result.get((name, label), 0) + n
    return sorted(result.items())


def _keys(value) -> List[str]:
    if value is None:
        return []
    return list(value.as_dict() if hasattr(value, "as_dict") else value)


def _update(table: str, key: BucketKey, ingress: int, egress: int, entries) -> dict:
    service, level, start = key
    names, values, sets = {}, {":zero": {"N": "0"}, ":in": {"N": str(ingress)}, ":out": {"N": str(egress)}}, []
    for i, ((name, label), n) in enumerate(entries):
        names[f"#k{i}"] = label
        values[f":v{i}"] = {"N": str(n)}
        sets.append(f"{name}.#k{i} = if_not_exists({name}.#k{i}, :zero) + :v{i}")
    expression = ("SET " + ", ".join(sets) + " " if sets else "") + "ADD ingress :in, egress :out"
    update = {"TableName": table, "Key": {"pk": {"S": pushed_pk(service)}, "sk": {"S": pushed_bucket_sk(level, start)}},
              "UpdateExpression": expression, "ExpressionAttributeValues": values,
              "ConditionExpression": "attribute_exists(pk)"}
    if names:
        update["ExpressionAttributeNames"] = names
    return update


def _is_conflict(error: PynamoDBException) -> bool:
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(r is not None and r.code in ("TransactionConflict", "ConditionalCheckFailed") for r in reasons)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)
