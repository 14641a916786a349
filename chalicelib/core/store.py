"""The usage store: DynamoDB reads and writes of usage, services and collector state.

Values are absolute and keys deterministic (see models.py), so writing the same
computation twice leaves the table unchanged.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from pynamodb.exceptions import PutError, PynamoDBException, UpdateError

from chalicelib.core import packed
from chalicelib.core.errors import StoreError
from chalicelib.core.models import (CONSUMER_RANKING_PK, CONSUMERS_PK, SERVICES_PK, TICK_KEY, CheckpointPage,
                                    CollectorState, ConsumerRanking, ConsumerUsage, ScheduleTick, ServiceUsage,
                                    ShardAssignment, UsageBucket, bucket_sk, checkpoint_page_sk, checkpoint_pk,
                                    collector_state_key, is_condition_failure, read_item, shard_assignment_key,
                                    usage_pk)
from chalicelib.core.pushed import PushedUsage
from chalicelib.core.timeutil import LEVEL_ORDER, LEVELS
from chalicelib.core.usage import BucketUsage

CHECKPOINT_ATTRIBUTES = ("checkpoint", "checkpoint_at", "previous_checkpoint", "previous_checkpoint_at",
                         "checkpoint_pages", "previous_checkpoint_pages")
CHECKPOINTS = ("checkpoint", "previous_checkpoint")  # the two blobs a service item carries
# A service's two checkpoints share its item up to this size together; larger ones (a service
# with thousands of series) are kept in CheckpointPage items of at most CHECKPOINT_PAGE_BYTES,
# so the item stays far under DynamoDB's 400 KB whatever the number of series.
CHECKPOINT_INLINE_BYTES = 96 * 1024
CHECKPOINT_PAGE_BYTES = 300 * 1024
LEASE_SECONDS = 900  # longer than the Lambda timeout: a dead run's lease expires by itself
BATCH = 25  # items in one BatchWriteItem request
BATCH_GET = 100  # keys in one BatchGetItem request
OVERSIZED_KEPT = 100  # quarantined items remembered per store (a run's report shows them)
SHARD_SEPARATOR = "\x1f"  # between a consumer key and its shard in a consumer item's sort key

log = logging.getLogger(__name__)


def _is_invalid_item(error: PynamoDBException) -> bool:
    """Whether DynamoDB refused the request for what an item holds (over 400 KB, a key too long,
    ...): sending it again can never succeed, unlike a throttle or a network failure."""
    return getattr(error, "cause_response_code", None) == "ValidationException"

def _plain(value):
    """DynamoDB maps come back as MapAttribute/Decimal; the domain wants dicts, ints and floats."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (int, float)) or hasattr(value, "as_integer_ratio"):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def bucket_usage(item: UsageBucket) -> BucketUsage:
    consumers = None  # written before consumers were kept
    if item.packed_consumers is not None:
        try:
            consumers = packed.unpack(item.packed_consumers)
        except packed.UnreadablePacked as e:
            raise StoreError(f"the consumers of {item.pk} {item.sk} are unreadable: {e}") from e
    elif item.consumers is not None:
        consumers = _plain(item.consumers)
    return BucketUsage(item.service, int(item.start), _plain(item.routes or {}), _plain(item.stats or {}), consumers)


class UsageStore:
    def __init__(self, minute_ttl_days: int = 35, write_workers: int = 1):
        self.minute_ttl_days = minute_ttl_days
        # Batch writes in flight at once: DynamoDB answers each in a few ms, so a minute of a
        # large shard is mostly waiting; botocore clients are thread-safe (PynamoDB shares one
        # client per model and keeps its botocore session per thread).
        self.write_workers = max(1, write_workers)
        # Finer rollups outlive minutes long enough to serve any chart that may ask for them.
        self._ttl_seconds = {"1m": minute_ttl_days * 86400, "5m": 4 * minute_ttl_days * 86400,
                             "15m": 4 * minute_ttl_days * 86400}
        self.writes = 0  # write requests' items, for status and benchmarks
        self._paged: Set[str] = set()  # services whose checkpoint was last seen in pages
        # Items DynamoDB refused to store whatever the retry (see _write_batches): [{"item",
        # "key", "reason"}], newest last, at most OVERSIZED_KEPT; take_oversized() hands them over.
        self.oversized: List[dict] = []
        self._oversized_lock = threading.Lock()
        # Pushed bytes, kept apart from the scraped ones (chalicelib/core/pushed.py); readers add them.
        self.pushed = PushedUsage(minute_ttl_days)

    def retained_from(self, now: float) -> Dict[str, int]:
        """Per level with a TTL, the earliest bucket start still kept (older ones have expired)."""
        return {level: int(now) - ttl for level, ttl in self._ttl_seconds.items()}

    # -- usage buckets -------------------------------------------------------------------
    def _bucket_item(self, level: str, bucket: BucketUsage) -> UsageBucket:
        ttl = self._ttl_seconds.get(level)
        bucket = bucket.bounded()  # what one item may hold: a service's routes are unbounded
        consumers = None if bucket.consumers is None else packed.pack(bucket.consumers)
        return UsageBucket(
            usage_pk(bucket.service), bucket_sk(level, bucket.start),
            service=bucket.service, level=level, start=bucket.start,
            ingress=bucket.ingress, egress=bucket.egress, routes=bucket.routes, stats=bucket.stats,
            packed_consumers=consumers, consumers=bucket.consumers if consumers is None else None,
            expires_at=datetime.fromtimestamp(bucket.start + ttl, tz=timezone.utc) if ttl else None,
        )

    def _write_batches(self, model, items: Sequence, make: Callable, what: str) -> int:
        """BatchWriteItem in requests of 25 items, up to ``write_workers`` requests at once.

        DynamoDB refuses a whole batch for one item it can never store (over 400 KB, a key too
        long): that batch is written again item by item, and only the offender is left out,
        quarantined (``oversized``) and logged, so its siblings and the rest of the run go on
        instead of retrying the same window for ever. Returns how many items were stored."""
        def write(part):
            try:
                with model.batch_write() as batch:
                    for item in part:
                        batch.save(make(item))
                return len(part)
            except PynamoDBException as e:
                if not _is_invalid_item(e):
                    raise
            return sum(write_alone(item) for item in part)

        def write_alone(item) -> int:
            stored = make(item)
            try:
                stored.save()
                return 1
            except PynamoDBException as e:
                if not _is_invalid_item(e):
                    raise
                self._quarantine(what, stored, e)
                return 0

        parts = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
        try:
            if self.write_workers == 1 or len(parts) <= 1:
                return sum(write(part) for part in parts)
            model._get_connection().connection.client  # made once here: creating clients is not thread-safe
            with ThreadPoolExecutor(max_workers=min(self.write_workers, len(parts))) as pool:
                return sum(done.result() for done in [pool.submit(write, part) for part in parts])
        except PynamoDBException as e:
            raise StoreError(f"writing {len(items)} {what} failed: {e}") from e

    def _quarantine(self, what: str, item, error: PynamoDBException) -> None:
        reason = str(getattr(error, "cause_response_message", None) or error)[:300]
        entry = {"item": what, "key": [item.pk, item.sk], "reason": reason}
        log.error("store: one of the %s cannot be stored and is quarantined: %s %s: %s",
                  what, item.pk, item.sk, reason)
        with self._oversized_lock:
            self.oversized = (self.oversized + [entry])[-OVERSIZED_KEPT:]

    def take_oversized(self) -> List[dict]:
        """The items quarantined since the last call (a collector run reports them once)."""
        with self._oversized_lock:
            taken, self.oversized = self.oversized, []
        return taken

    def put_buckets(self, level: str, buckets: Sequence[BucketUsage]) -> int:
        stored = self._write_batches(UsageBucket, list(buckets), lambda b: self._bucket_item(level, b),
                                     f"{level} usage items")
        self.writes += stored
        return stored

    def get_buckets(self, level: str, keys: Iterable[Tuple[str, int]]) -> Dict[Tuple[str, int], BucketUsage]:
        wanted = [(usage_pk(service), bucket_sk(level, start)) for service, start in keys]

        def read(part):
            return [bucket_usage(item) for item in UsageBucket.batch_get(part)]

        parts = [wanted[i:i + BATCH_GET] for i in range(0, len(wanted), BATCH_GET)]
        found = {}
        try:
            if self.write_workers == 1 or len(parts) <= 1:
                results = [read(part) for part in parts]
            else:
                UsageBucket._get_connection().connection.client
                with ThreadPoolExecutor(max_workers=min(self.write_workers, len(parts))) as pool:
                    results = list(pool.map(read, parts))
        except PynamoDBException as e:
            raise StoreError(f"reading {len(wanted)} {level} usage items failed: {e}") from e
        for result in results:
            for bucket in result:
                found[(bucket.service, bucket.start)] = bucket
        return found

    def query_buckets(self, service: str, level: str, start: int, end: int) -> List[BucketUsage]:
        """Buckets of ``level`` with start <= bucket start < end, in time order."""
        if end <= start:
            return []
        last = end - LEVELS[level]
        if last < start:
            return []
        try:
            items = UsageBucket.query(
                usage_pk(service),
                UsageBucket.sk.between(bucket_sk(level, start), bucket_sk(level, max(start, last))),
            )
            return [bucket_usage(item) for item in items]
        except PynamoDBException as e:
            raise StoreError(f"reading {level} usage of {service!r} failed: {e}") from e

    def range_total(self, service: str, start: int, end: int) -> BucketUsage:
        """Usage of a service over [start, end) (minute-aligned), read from the coarsest
        stored levels that fit: whole days, then hours, quarters, five-minutes, minutes."""
        result = BucketUsage(service, start)
        for lo, hi, level in decompose(start, end):
            for bucket in self.query_buckets(service, level, lo, hi):
                result.merge(bucket)
        return result

    # -- services ------------------------------------------------------------------------
    def list_services(self, after: Optional[str] = None, checkpoints: bool = False):
        """Every service item in name order (from after ``after``), read page by page. The
        collector's checkpoints are left out unless asked for: only the collector needs them
        (and only an item read with them may be written back)."""
        condition = ServiceUsage.sk > after if after else None
        attributes = None if checkpoints else [name for name in ServiceUsage.get_attributes()
                                                if name not in CHECKPOINT_ATTRIBUTES]
        try:
            for item in ServiceUsage.query(SERVICES_PK, condition, attributes_to_get=attributes):
                yield self._reassembled(item) if checkpoints else item
        except PynamoDBException as e:
            raise StoreError(f"listing services failed: {e}") from e

    def get_services(self, names: Iterable[str]) -> List[ServiceUsage]:
        """These services' items (those that exist), checkpoints included."""
        keys = [(SERVICES_PK, name) for name in names]
        try:
            return [self._reassembled(item) for i in range(0, len(keys), BATCH_GET)
                    for item in ServiceUsage.batch_get(keys[i:i + BATCH_GET])]
        except PynamoDBException as e:
            raise StoreError(f"reading {len(keys)} services failed: {e}") from e

    def get_service(self, service: str) -> Optional[ServiceUsage]:
        """One service's item, to read (a large checkpoint is not reassembled: never write it back)."""
        return read_item(ServiceUsage, (SERVICES_PK, service), f"service {service!r}")

    def put_services(self, items: Sequence[ServiceUsage]) -> int:
        """Write service items; a checkpoint too large for its item goes to pages first, so an
        item never points at pages that are not there, and pages of older checkpoints go after."""
        spilled = [self._spill(item) for item in items]
        pages = [page for _, item_pages in spilled for page in item_pages]
        if pages:
            self._write_batches(CheckpointPage, pages, lambda page: page, "checkpoint pages")
        stored = self._write_batches(ServiceUsage, [item for item, _ in spilled], lambda item: item,
                                     "service usage items")
        for item, item_pages in spilled:
            if item_pages:
                self._delete_stale_pages(item.service, {page.sk for page in item_pages})
                self._paged.add(item.service)
            elif item.service in self._paged and self._delete_stale_pages(item.service, set()):
                # Its checkpoint fits the item again (one stored in 24-byte records before
                # collect/checkpoint.py's compact form takes a third): every page it had is stale.
                self._paged.discard(item.service)
        self.writes += stored
        return stored

    # -- large checkpoints (see CHECKPOINT_INLINE_BYTES) -----------------------------------------
    @staticmethod
    def _spill(item: ServiceUsage) -> Tuple[ServiceUsage, List[CheckpointPage]]:
        """The item as stored, and the pages its checkpoints need (none when they fit inline)."""
        blobs = {name: bytes(getattr(item, name) or b"") for name in CHECKPOINTS}
        if sum(len(blob) for blob in blobs.values()) <= CHECKPOINT_INLINE_BYTES:
            return item, []
        stored, pages = ServiceUsage.from_raw_data(item.serialize()), []
        for name, blob in blobs.items():
            at = getattr(item, f"{name}_at")
            if not blob or at is None:
                continue
            parts = [blob[i:i + CHECKPOINT_PAGE_BYTES] for i in range(0, len(blob), CHECKPOINT_PAGE_BYTES)]
            pages += [CheckpointPage(checkpoint_pk(item.service), checkpoint_page_sk(at, n), blob=part)
                      for n, part in enumerate(parts)]
            setattr(stored, name, None)
            setattr(stored, f"{name}_pages", len(parts))
        return stored, pages

    def _reassembled(self, item: ServiceUsage) -> ServiceUsage:
        """The item with checkpoints kept in pages put back in place (the collector sees blobs only)."""
        if not (item.checkpoint_pages or item.previous_checkpoint_pages):
            return item
        self._paged.add(item.service)
        try:
            found = {page.sk: bytes(page.blob) for page in CheckpointPage.query(checkpoint_pk(item.service))}
        except PynamoDBException as e:
            raise StoreError(f"reading the checkpoint of {item.service!r} failed: {e}") from e
        for name in CHECKPOINTS:
            count, at = getattr(item, f"{name}_pages"), getattr(item, f"{name}_at")
            if not count:
                continue
            keys = [checkpoint_page_sk(at, n) for n in range(int(count))]
            if any(key not in found for key in keys):
                # Counting on without it would count lifetime counters again from zero.
                raise StoreError(f"the {name.replace('_', ' ')} of {item.service!r} is missing pages")
            setattr(item, name, b"".join(found[key] for key in keys))
            setattr(item, f"{name}_pages", None)
        return item

    def _delete_stale_pages(self, service: str, current: set) -> bool:
        """Delete the service's pages other than ``current``; False when that failed."""
        try:
            stale = [page for page in CheckpointPage.query(checkpoint_pk(service), attributes_to_get=["pk", "sk"])
                     if page.sk not in current]
            with CheckpointPage.batch_write() as batch:
                for page in stale:
                    batch.delete(page)
        except PynamoDBException as e:
            # Stale pages are only storage: the item names the pages it uses. Tried again next write.
            log.warning("store: deleting old checkpoint pages of %r failed: %s", service, e)
            return False
        return True

    # -- consumers (collect/consumers.py: one item per consumer and shard) ---------------------
    @staticmethod
    def consumer_sk(consumer: str, shard: int = 0) -> str:
        """A consumer's item of one collector shard: ``<consumer>`` for shard 0 (and unsharded),
        ``<consumer>\\x1f<shard>`` for the others (no consumer key holds a control character)."""
        return consumer if shard == 0 else f"{consumer}{SHARD_SEPARATOR}{shard}"

    def get_consumer_items(self, consumers: Sequence[str], shard: int = 0) -> Dict[str, ConsumerUsage]:
        """One shard's items of these consumers (those that exist), by consumer."""
        keys = [(CONSUMERS_PK, self.consumer_sk(c, shard)) for c in consumers]
        return {item.consumer: item for item in self._batch_get_consumers(keys)}

    def _batch_get_consumers(self, keys: List[tuple]) -> List[ConsumerUsage]:
        """BatchGetItem in requests of 100 keys, up to ``write_workers`` at once (a flush of
        the collector reads every active consumer's item)."""
        parts = [keys[i:i + BATCH_GET] for i in range(0, len(keys), BATCH_GET)]
        try:
            if self.write_workers == 1 or len(parts) <= 1:
                return [item for part in parts for item in ConsumerUsage.batch_get(part)]
            ConsumerUsage._get_connection().connection.client  # made once here: creating clients is not thread-safe
            with ThreadPoolExecutor(max_workers=min(self.write_workers, len(parts))) as pool:
                return [item for found in pool.map(lambda part: list(ConsumerUsage.batch_get(part)), parts)
                        for item in found]
        except PynamoDBException as e:
            raise StoreError(f"reading {len(keys)} consumer items failed: {e}") from e

    def put_consumers(self, items: Sequence[ConsumerUsage]) -> int:
        stored = self._write_batches(ConsumerUsage, list(items), lambda item: item, "consumer usage items")
        self.writes += stored
        return stored

    def get_consumer(self, consumer: str, shard_count: int = 1) -> List[ConsumerUsage]:
        """Every shard's item of one consumer ([]: never seen); readers sum them."""
        return self.get_consumers([consumer], shard_count).get(consumer, [])

    def get_consumers(self, consumers: Sequence[str], shard_count: int = 1) -> Dict[str, List[ConsumerUsage]]:
        """Every shard's items of these consumers, by consumer: one BatchGet of
        len(consumers) x shard_count keys."""
        keys = [(CONSUMERS_PK, self.consumer_sk(c, shard)) for c in consumers for shard in range(shard_count)]
        found: Dict[str, List[ConsumerUsage]] = {}
        for item in sorted(self._batch_get_consumers(keys), key=lambda i: i.sk):
            found.setdefault(item.consumer, []).append(item)
        return found

    def consumer_page(self, after: Optional[str], limit: int, reverse: bool = False) -> Tuple[Dict[str, List[ConsumerUsage]], bool]:
        """Up to ``limit`` consumers in name order after (or, ``reverse``, before) ``after``, each
        with its shards' items, and whether more follow: one Query reading at most
        (limit + 1) x shards items."""
        if after is None:
            condition = None
        elif reverse:
            condition = ConsumerUsage.sk < after
        else:
            condition = ConsumerUsage.sk > after + SHARD_SEPARATOR + "\x7f"  # past after's shard items
        page: Dict[str, List[ConsumerUsage]] = {}
        try:
            for item in ConsumerUsage.query(CONSUMERS_PK, condition, scan_index_forward=not reverse, page_size=limit + 1):
                if item.consumer not in page and len(page) == limit:
                    return page, True
                page.setdefault(item.consumer, []).append(item)
        except PynamoDBException as e:
            raise StoreError(f"listing consumers failed: {e}") from e
        return page, False

    def all_consumers(self, after: Optional[str] = None):
        """Every consumer item of every shard, in name order (after consumer ``after``), a
        consumer's shard items next to each other (the ranking's one full read)."""
        condition = ConsumerUsage.sk > after + SHARD_SEPARATOR + "\x7f" if after else None  # past after's shard items
        try:
            yield from ConsumerUsage.query(CONSUMERS_PK, condition)
        except PynamoDBException as e:
            raise StoreError(f"listing consumers failed: {e}") from e

    # -- consumer rankings (api/consumers.py orders pages by them) --------------------------------
    def ranking_meta(self, order: str) -> Optional[ConsumerRanking]:
        return read_item(ConsumerRanking, (CONSUMER_RANKING_PK, f"{order}#meta"), f"the {order} ranking")

    def ranking_pages(self, order: str, pages: Sequence[int]) -> Dict[int, List[str]]:
        keys = [(CONSUMER_RANKING_PK, f"{order}#{page:06d}") for page in pages]
        try:
            return {int(item.sk.split("#", 1)[1]): list(item.names) for item in ConsumerRanking.batch_get(keys)}
        except PynamoDBException as e:
            raise StoreError(f"reading the {order} ranking failed: {e}") from e

    def put_ranking(self, order: str, names: Sequence[str], page_size: int, at: float) -> int:
        """Store a ranking (``names`` busiest first) as pages of ``page_size``, then its meta item
        (so a reader never sees a count beyond the pages written). Pages past the new end that an
        older, longer ranking left are not read: the meta item's count bounds every reader."""
        pages = [ConsumerRanking(CONSUMER_RANKING_PK, f"{order}#{i // page_size:06d}", names=list(names[i:i + page_size]),
                                 ranked_at=at) for i in range(0, len(names), page_size)]
        meta = ConsumerRanking(CONSUMER_RANKING_PK, f"{order}#meta", names=[], ranked_at=at, count=len(names))
        stored = self._write_batches(ConsumerRanking, pages, lambda item: item, f"{order} ranking pages")
        stored += self._write_batches(ConsumerRanking, [meta], lambda item: item, f"{order} ranking")
        self.writes += stored
        return stored

    # -- collector state (one per shard) ---------------------------------------------------
    def state(self, shard: int = 0) -> CollectorState:
        key = collector_state_key(shard)
        return read_item(CollectorState, key, "collector state", missing=CollectorState(*key))

    def states(self, shard_count: int) -> List[CollectorState]:
        """Every shard's state, shard 0 first."""
        return [self.state(shard) for shard in range(shard_count)]

    def state_of_service(self, item: Optional[ServiceUsage]) -> CollectorState:
        """What was collected for this service: the watermark of the shard that counts it, and
        the gaps of that shard and of the catch-all (which counted it before the hand-over)."""
        shard = int(item.shard) if item is not None and item.shard is not None else 0
        state = self.state(shard)
        if shard != 0:
            state.gaps = sorted([list(g) for g in (state.gaps or [])] + [list(g) for g in (self.state(0).gaps or [])])
        return state

    def tick(self, now: float) -> None:
        """Mark a scheduled minute (its stream record drives the alerts' sweep); a changed value,
        so the stream carries a record for each."""
        try:
            ScheduleTick(*TICK_KEY, at=now).save()
        except PynamoDBException as e:
            raise StoreError(f"writing the schedule's tick failed: {e}") from e

    # -- shard assignments -----------------------------------------------------------------
    def assignments(self, shard_count: int) -> Dict[int, ShardAssignment]:
        """The fixed shards' (1..N-1) assignments; a shard with none yet has an empty one."""
        found = {shard: ShardAssignment(*shard_assignment_key(shard)) for shard in range(1, shard_count)}
        if not found:
            return found
        try:
            for item in ShardAssignment.batch_get([shard_assignment_key(shard) for shard in found]):
                found[int(item.sk.split("#", 1)[1])] = item
        except PynamoDBException as e:
            raise StoreError(f"reading the shard assignments failed: {e}") from e
        return found

    def assignment(self, shard: int) -> ShardAssignment:
        """One fixed shard's assignment (what it reads at each chunk; the others are not its business)."""
        key = shard_assignment_key(shard)
        return read_item(ShardAssignment, key, f"shard {shard}'s assignment", missing=ShardAssignment(*key))

    def hand_over(self, shard: int, at: int, services: Iterable[str]) -> None:
        """The catch-all shard gives these services to ``shard``, counted by it from ``at``."""
        entries = {f"{at}:{service}" for service in services}
        if entries:
            self._update_assignment(shard, [ShardAssignment.incoming.add(entries)])

    def take_over(self, shard: int, entries: Iterable[str]) -> None:
        """``shard`` now counts these handed-over services (entries as in ``incoming``)."""
        entries = set(entries)
        if entries:
            names = {entry.split(":", 1)[1] for entry in entries}
            self._update_assignment(shard, [ShardAssignment.incoming.delete(entries),
                                            ShardAssignment.services.add(names)])

    def _update_assignment(self, shard: int, actions) -> None:
        try:
            ShardAssignment(*shard_assignment_key(shard)).update(actions=actions)
        except PynamoDBException as e:
            raise StoreError(f"updating shard {shard}'s assignment failed: {e}") from e

    def acquire_lease(self, run_id: str, now: float, lease_seconds: int, shard: int = 0) -> bool:
        """Mark a run in progress unless another live run holds the lease."""
        state = self.state(shard)
        if state.running_since is not None and state.running_since > now - lease_seconds:
            return False
        condition = CollectorState.run_id.does_not_exist() if state.run_id is None \
            else (CollectorState.run_id == state.run_id)
        state.running_since = now
        state.run_id = run_id
        state.last_run_start = now
        try:
            state.save(condition=condition)
        except PutError as e:
            if is_condition_failure(e):
                return False
            raise StoreError(f"taking the collector lease failed: {e}") from e
        return True

    def update_state(self, run_id: str, shard: int = 0, **fields) -> None:
        """Set state fields, only while this run holds the lease."""
        actions = [getattr(CollectorState, name).set(value) if value is not None
                   else getattr(CollectorState, name).remove() for name, value in fields.items()]
        try:
            CollectorState(*collector_state_key(shard)).update(actions=actions, condition=CollectorState.run_id == run_id)
        except UpdateError as e:
            if is_condition_failure(e):
                raise StoreError("the collector lease was lost to another run") from e
            raise StoreError(f"updating collector state failed: {e}") from e


def decompose(start: int, end: int) -> List[Tuple[int, int, str]]:
    """Split [start, end) into runs of whole buckets, coarsest levels in the middle.

    Returns (lo, hi, level) ranges whose buckets tile [start, end) exactly."""
    if end <= start:
        return []
    for level in reversed(LEVEL_ORDER):
        size = LEVELS[level]
        lo = -(-start // size) * size
        hi = end // size * size
        if hi - lo >= size:
            return decompose(start, lo) + [(lo, hi, level)] + decompose(hi, end)
    raise ValueError(f"range [{start}, {end}) is not minute-aligned")
