"""PynamoDB models: every item Bandwidth Meter keeps, in one DynamoDB table.

Key design (pk / sk):

| item               | pk                 | sk                                  |
|--------------------|--------------------|-------------------------------------|
| UsageBucket        | USAGE#<service>    | <level>#<bucket start, ISO minute>  |
| ServiceUsage       | SERVICES           | <service>                           |
| ConsumerUsage      | CONSUMERS          | <consumer> (collector shard k >= 1: <consumer>\x1f<k>) |
| ConsumerRanking    | CONSUMER_RANKING   | <order>#<page>, <order>#meta        |
| CheckpointPage     | CHECKPOINT#<service> | <checkpoint time>#<page>          |
| CollectorState     | STATE              | collector, collector#<shard> (1..N-1) |
| ShardAssignment    | STATE              | shard#<shard> (1..N-1)              |
| Quota              | QUOTA              | <service>                           |
| Quota (consumer)   | CONSUMER_QUOTA     | <consumer>                          |
| QuotaRules         | RULES              | current                             |
| AuditEntry         | AUDIT              | <ISO time>#<id>                     |
| Alert              | ALERT#<service>    | <period start ISO>#<threshold>      |
| Alert (consumer)   | CONSUMER_ALERT#<consumer> | <period start ISO>#<threshold> |
| AlertDue           | ALERTS_DUE         | <period start ISO>#<threshold>#<service> (a consumer's: ...@<consumer>) |
| RulesReevaluation  | ALERTS_REEVALUATE  | rules                               |
| EnforcementState   | STATE              | enforcement                         |
| ScheduleTick       | STATE              | tick                                |
| EnforcementNotice  | ENFORCE#<service>  | <period start ISO>#<block|unblock>  |
| (consumer's)       | ENFORCE_CONSUMER#<consumer> | <period start ISO>#<block|unblock> |
| PushedBucket       | PUSHED_USAGE#<service> | pushed#<level>#<bucket start, ISO minute> |
| EventMarker        | EVENT#<2 hex>      | <sha256 of source and id>           |
| PushBatch          | PUSH_PENDING       | <batch key>                         |
| PushApplied        | PUSHED#<batch key> | group#<n>                           |
| ImportJob          | IMPORTS            | <import id>                         |
| PushedService      | PUSHED_SERVICES    | <service>                           |
| ImportBatch        | IMPORT#<import id> | batch#<n, 6 digits>                 |

A consumer and a service may have the same name: every key a consumer has (quota, alerts, their
due-markers, block notices) is spelled apart from a service's (``kind`` "consumer"), so the two
never share a quota, an alert or a notice.

Pushed bytes (chalicelib/core/pushed.py) are the exception to "values absolute": their buckets
are kept with ADD, made idempotent by the event markers and the batches' applied groups (see
pushed.py), and the collector never writes them (its keys never start with ``pushed#``).

Keys are deterministic and values absolute, so a retried or overlapping
collector run writes the same items again (ARCHITECTURE.md, guarantee 2).
The key builders below are the only place these strings are spelled; the
adapters (store.py, quota_book.py, alert_ledger.py, enforcement_ledger.py) are the only code that
reads or writes the models.

The models carry no table of their own: ``bind`` points them at the configured
table (bootstrap does, before any adapter is built), and a model used unbound
fails loudly instead of quietly reading some default table.
"""
from __future__ import annotations

from pynamodb.attributes import (
    BinaryAttribute,
    UnicodeSetAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.core.errors import StoreError
from chalicelib.core.timeutil import iso, iso_minute

# -- keys ------------------------------------------------------------------------------------
SERVICES_PK = "SERVICES"
CONSUMERS_PK = "CONSUMERS"
CONSUMER_RANKING_PK = "CONSUMER_RANKING"
STATE_PK = "STATE"
STATE_KEY = (STATE_PK, "collector")  # shard 0's state: the key an unsharded collector always used
ENFORCEMENT_KEY = (STATE_PK, "enforcement")
TICK_KEY = (STATE_PK, "tick")  # rewritten each scheduled minute: its stream record is the alerts' sweep clock
QUOTA_PK = "QUOTA"
CONSUMER_QUOTA_PK = "CONSUMER_QUOTA"  # a consumer's own quota: apart from a service's of the same name
SERVICE, CONSUMER = "service", "consumer"  # the kinds of thing a quota, an alert or a block is about
RULES_KEY = ("RULES", "current")
AUDIT_PK = "AUDIT"
FORECAST = "forecast"  # the sort-key suffix of a forecast alert, in place of a threshold
ALERTS_DUE_PK = "ALERTS_DUE"  # markers of alerts claimed but not yet sent (the sweep's work list)
RULES_REEVALUATION_KEY = ("ALERTS_REEVALUATE", "rules")  # where an unfinished rules change resumes
CONSUMER_RULES_REEVALUATION_KEY = ("ALERTS_REEVALUATE", "consumer-rules")  # the same, for consumers


def collector_state_key(shard: int = 0) -> tuple:
    """Each shard's lease, watermark, gaps and quarantine; shard 0 keeps the unsharded key."""
    return STATE_KEY if shard == 0 else (STATE_PK, f"collector#{shard}")


def shard_assignment_key(shard: int) -> tuple:
    """The services a fixed shard (1..N-1) collects; shard 0 collects every service not listed."""
    return (STATE_PK, f"shard#{shard}")


def usage_pk(service: str) -> str:
    return f"USAGE#{service}"


def bucket_sk(level: str, start: int) -> str:
    return f"{level}#{iso_minute(start)}"


PUSHED_SK_PREFIX = "pushed#"
PUSH_PENDING_PK = "PUSH_PENDING"
IMPORTS_PK = "IMPORTS"
PUSHED_SERVICES_PK = "PUSHED_SERVICES"


def pushed_pk(service: str) -> str:
    """Pushed buckets' own partition: the API writes it, never the collector's USAGE# buckets
    (IAM narrows writes by partition key only)."""
    return f"PUSHED_USAGE#{service}"


def pushed_bucket_sk(level: str, start: int) -> str:
    return PUSHED_SK_PREFIX + bucket_sk(level, start)


def event_marker_key(digest: str) -> tuple:
    """Markers spread over 256 partitions by their digest's first byte (no hot key)."""
    return f"EVENT#{digest[:2]}", digest


def push_applied_key(batch: str, group: int) -> tuple:
    return f"PUSHED#{batch}", f"group#{group}"


def import_batch_key(import_id: str, number: int) -> tuple:
    return f"IMPORT#{import_id}", f"batch#{number:06d}"


def alert_pk(service: str, kind: str = SERVICE) -> str:
    return f"ALERT#{service}" if kind == SERVICE else f"CONSUMER_ALERT#{service}"


def alert_period_prefix(period_start: int) -> str:
    return f"{iso(period_start)}#"


def alert_sk(period_start: int, threshold, forecast: bool = False) -> str:
    return alert_period_prefix(period_start) + (FORECAST if forecast else format(threshold, "09.3f"))


def alert_due_sk(service: str, period_start: int, threshold, forecast: bool = False, kind: str = SERVICE) -> str:
    # The alert's own sort key first (time-ordered), then the service: a name may hold any character.
    # A consumer's follows "@" instead of "#": the alert's sort key has a fixed shape (ISO time, "#",
    # a threshold or "forecast"), so the character after it tells the kinds apart whatever the names.
    return f"{alert_sk(period_start, threshold, forecast)}{'#' if kind == SERVICE else '@'}{service}"


def enforcement_notice_key(service: str, period_start: int, event: str, kind: str = SERVICE) -> tuple:
    return f"ENFORCE#{service}" if kind == SERVICE else f"ENFORCE_CONSUMER#{service}", f"{iso(period_start)}#{event}"


def audit_sk(at: float, unique: str) -> str:
    # Milliseconds since the epoch, zero-padded: the sort key orders entries in time.
    return f"{int(at * 1000):015d}#{unique}"


def is_condition_failure(error: PynamoDBException) -> bool:
    """Whether a write (or a transaction) failed only because a condition did not hold: someone else won."""
    if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


def read_item(model, key: tuple, what: str, missing=None):
    """The item of ``model`` at ``key``; ``missing`` when there is none; a StoreError naming
    ``what`` when the read fails (the adapters' one get-or-default)."""
    try:
        return model.get(*key)
    except DoesNotExist:
        return missing
    except PynamoDBException as e:
        raise StoreError(f"reading {what} failed: {e}") from e


def transaction() -> TransactWrite:
    """A write transaction on the bound table (the models must be bound)."""
    meta = UsageBucket.Meta  # bind() sets every concrete model's Meta alike
    if meta.table_name is None:
        raise StoreError("the models are not bound to a table: chalicelib.bootstrap binds them (models.bind)")
    return TransactWrite(connection=Connection(region=meta.region, host=meta.host))


class _TableModel(Model):
    class Meta:
        abstract = True
        table_name = None  # set by bind()
        region = None
        billing_mode = "PAY_PER_REQUEST"
        stream_view_type = "NEW_AND_OLD_IMAGES"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)

    @classmethod
    def _get_connection(cls):
        if cls.Meta.table_name is None:
            raise StoreError(f"{cls.__name__} is not bound to a table: chalicelib.bootstrap binds the models "
                             "before building an adapter (models.bind)")
        return super()._get_connection()


class UsageBucket(_TableModel):
    """Bytes of one service in one time bucket (a minute, or a rollup level)."""

    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
    level = UnicodeAttribute()
    start = NumberAttribute()  # epoch seconds
    ingress = NumberAttribute(default=0)
    egress = NumberAttribute(default=0)
    # {route: {"ingress": n, "egress": n}}; one item per service keeps the write
    # cost independent of the number of routes (up to the 400 KB item size).
    routes = MapAttribute(default=dict)
    # {consumer: {"ingress": n, "egress": n}}: the same bytes per consumer (usage.BucketUsage),
    # packed (core/packed.py: half the size); kept as the map ``consumers`` only when it holds a
    # value the packed form cannot (and on items written before 2026-12-05). Both absent on items
    # written before consumers were kept: read as "no consumer data".
    packed_consumers = BinaryAttribute(legacy_encoding=False, null=True)
    consumers = MapAttribute(null=True)
    # Request counts by status and the request-latency histogram (see usage.BucketUsage.stats).
    stats = MapAttribute(default=dict)
    expires_at = TTLAttribute(null=True)


class _PeriodUsageItem(_TableModel):
    """What a service's and a consumer's usage items share: when the thing was active, and its
    usage in its current quota period.

    ``through`` is the collector watermark up to which the period usage counts;
    the collector sets absolute values guarded by it, never ADDs.
    """

    class Meta(_TableModel.Meta):
        abstract = True

    first_seen = NumberAttribute()
    last_active = NumberAttribute()
    period_kind = UnicodeAttribute()
    period_anchor = NumberAttribute(default=1)
    period_start = NumberAttribute()
    period_end = NumberAttribute()
    ingress = NumberAttribute(default=0)
    egress = NumberAttribute(default=0)
    total = NumberAttribute(default=0)
    through = NumberAttribute()

    def counts_cycle(self, kind: str, anchor_day: int) -> bool:
        """Whether the stored usage is for periods of this kind and billing-cycle day."""
        return self.period_kind == kind and int(self.period_anchor) == anchor_day

    def holds(self, period) -> bool:
        """Whether the stored usage is exactly ``period``'s."""
        return self.counts_cycle(period.kind, period.anchor_day) and int(self.period_start) == period.start

    def precedes(self, period) -> bool:
        """Whether the stored usage is for an earlier period of the same cycle (so ``period`` has none yet)."""
        return self.counts_cycle(period.kind, period.anchor_day) and int(self.period_end) <= period.start


class ServiceUsage(_PeriodUsageItem):
    """A service seen by the collector, with its usage in the current quota period."""

    class Meta(_PeriodUsageItem.Meta):
        abstract = False

    service = UnicodeAttribute()
    # The collector's checkpoint of this service's counters (collect/checkpoint.py), as of
    # checkpoint_at, and the one it started that chunk from (previous_checkpoint_at).
    checkpoint = BinaryAttribute(legacy_encoding=False, null=True)
    checkpoint_at = NumberAttribute(null=True)
    previous_checkpoint = BinaryAttribute(legacy_encoding=False, null=True)
    previous_checkpoint_at = NumberAttribute(null=True)
    # A checkpoint too large to share the item (a service with thousands of series: ~17 bytes
    # each, both together) is kept in CheckpointPage items instead, this many pages; the store spills
    # and reassembles it, so the collector always sees the blobs above.
    checkpoint_pages = NumberAttribute(null=True)
    previous_checkpoint_pages = NumberAttribute(null=True)
    # The collector shard that counts this service (None: shard 0, the catch-all), so the API
    # reads the watermark and gaps that apply to it.
    shard = NumberAttribute(null=True)
    # The minute from which a fixed shard counts this service (its hand-over): the minutes before
    # were counted by the catch-all, into its own consumer items (collect/consumers.py reads back
    # no minute before this one).
    shard_since = NumberAttribute(null=True)
    # When bytes were last pushed for this service (chalicelib/core/pushed.py sets it after
    # applying them): the change puts the item on the stream, so the alerts function judges the
    # period again with the pushed bytes. Only a trigger: the collector may overwrite it.
    pushed_at = NumberAttribute(null=True)

    @classmethod
    def first_seen_at(cls, service: str, minute: int, last_active: int) -> "ServiceUsage":
        """A service the collector has just met; its period usage is set by the collector."""
        return cls(SERVICES_PK, service, service=service, first_seen=minute, last_active=last_active,
                   through=minute, period_kind="month", period_start=0, period_end=0)


class ConsumerUsage(_PeriodUsageItem):
    """A consumer seen by the collector (across every service), with its usage in the current
    quota period. Its bytes per minute live in the services' buckets (UsageBucket.consumers); this
    item adds them up for the period, so listing, quotas, alerts and blocks read one item.

    ``consumer`` is the consumer's key (names.qualified: the Kong username, prefixed with its
    workspace outside ``default``)."""

    class Meta(_PeriodUsageItem.Meta):
        abstract = False

    consumer = UnicodeAttribute()
    # The services this consumer sent bytes through in the period: {service: {"ingress": n, "egress": n}}
    # (bounded like a bucket's routes), so its chart reads only those services' buckets.
    services = MapAttribute(default=dict)

    @classmethod
    def first_seen_at(cls, consumer: str, minute: int, last_active: int) -> "ConsumerUsage":
        return cls(CONSUMERS_PK, consumer, consumer=consumer, first_seen=minute, last_active=last_active,
                   through=minute, period_kind="month", period_start=0, period_end=0)


class ConsumerRanking(_TableModel):
    """One page of the consumers in one order (usage or percent, busiest first), refreshed by the
    collector every few minutes, so a listing page in that order reads a constant number of items
    (store.py: consumer rankings). The page ``sk`` ``<order>#meta`` holds ``count`` and ``pages``."""

    class Meta(_TableModel.Meta):
        abstract = False

    names = ListAttribute(default=list)  # consumer keys, in the order's descending sense
    ranked_at = NumberAttribute()
    count = NumberAttribute(null=True)  # the meta item: consumers ranked


def checkpoint_pk(service: str) -> str:
    return f"CHECKPOINT#{service}"


def checkpoint_page_sk(at: int, page: int) -> str:
    return f"{int(at):012d}#{page:04d}"


class CheckpointPage(_TableModel):
    """One slice of a service's checkpoint that is too large for its ServiceUsage item, keyed by
    the checkpoint's time: the current and the previous checkpoint (a retried chunk starts from
    it) are both kept, and pages of any other time are stale (store.py deletes them)."""

    class Meta(_TableModel.Meta):
        abstract = False

    blob = BinaryAttribute(legacy_encoding=False)


class CollectorState(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    watermark = NumberAttribute(null=True)  # minutes before this are final
    # Every consumer's minutes before this are in its item: the last chunk that wrote them all ended
    # here (collect/consumers.py).
    consumers_through = NumberAttribute(null=True)
    collection_start = NumberAttribute(null=True)
    gaps = ListAttribute(default=list)  # [[start, end], ...] skipped beyond max backfill
    running_since = NumberAttribute(null=True)
    run_id = UnicodeAttribute(null=True)
    last_run_start = NumberAttribute(null=True)
    last_run_end = NumberAttribute(null=True)
    last_duration_ms = NumberAttribute(null=True)
    last_series_seen = NumberAttribute(null=True)
    last_minutes_written = NumberAttribute(null=True)
    last_items_written = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    last_error_at = NumberAttribute(null=True)
    last_success_at = NumberAttribute(null=True)
    schema_seen = UnicodeAttribute(null=True)
    # Series the last run skipped, with the reason: [{"series", "reason"}], at most QUARANTINE_SHOWN.
    quarantined = JSONAttribute(null=True)
    quarantined_count = NumberAttribute(null=True)
    services_waiting = NumberAttribute(null=True)  # the catch-all: new services its next run counts


class ScheduleTick(_TableModel):
    """The scheduled minute happened (chalicelib/schedule.py writes it whatever the collector
    did): on the stream, the alerts function's clock tick for its sweep."""

    class Meta(_TableModel.Meta):
        abstract = False

    at = NumberAttribute()


class ShardAssignment(_TableModel):
    """The services one fixed shard collects (chalicelib/collect/shards.py).

    ``services`` it has taken over; ``incoming`` ones the catch-all shard handed to it, as
    ``"<minute>:<service>"``: the catch-all counted them up to that minute and the shard counts
    them from it. String sets, so the catch-all adding and the shard taking over are atomic
    ADD/DELETE updates that never lose each other's change. An item holds up to 400 KB: about
    15,000 service names per shard."""

    class Meta(_TableModel.Meta):
        abstract = False

    services = UnicodeSetAttribute(default=set)
    incoming = UnicodeSetAttribute(default=set)


class Quota(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    # The validated quota document; None once deleted: the item stays, so its version goes on
    # and an ETag read before the delete never matches a quota stored after it (quota_book.py).
    body = JSONAttribute(null=True)
    updated_at = NumberAttribute()
    # Raised by one at each change, which is written only if the stored version is still the one
    # read (quota_book.py): two admins editing at once cannot both win. None: stored before versions.
    version = NumberAttribute(null=True)


class QuotaRules(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    rules = JSONAttribute()  # ordered list of {"pattern", ...quota fields}
    updated_at = NumberAttribute()
    version = NumberAttribute(null=True)  # as Quota.version


class AuditEntry(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    at = NumberAttribute()
    key = UnicodeAttribute()
    action = UnicodeAttribute()
    old = JSONAttribute(null=True)
    new = JSONAttribute(null=True)
    actor = UnicodeAttribute(null=True)


class Alert(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
    period_start = NumberAttribute()
    period_end = NumberAttribute()
    threshold = NumberAttribute()
    # pending | sent | covered | failed (an attempt failed; retried) | given_up (retried until
    # alerts.GIVE_UP_AFTER_SECONDS, then left: off the sweep's list, never claimed again)
    status = UnicodeAttribute()
    usage_bytes = NumberAttribute()
    limit_bytes = NumberAttribute()
    recipients = ListAttribute(default=list)
    crossed_at = NumberAttribute()
    claimed_at = NumberAttribute(null=True)  # the latest attempt's claim
    first_claimed_at = NumberAttribute(null=True)  # the first attempt's: how long it has been retried
    attempts = NumberAttribute(null=True)
    sent_at = NumberAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    covered_by = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    forecast = BooleanAttribute(default=False)
    forecast_eta = NumberAttribute(null=True)  # when the trend reaches 100 % (forecast alerts)
    delivered = ListAttribute(default=list)  # channels done ("email", "webhook"), so a retry resends none
    # What a redelivery needs to render the same message again.
    direction = UnicodeAttribute(null=True)
    period_kind = UnicodeAttribute(null=True)
    covers = ListAttribute(default=list)  # the lower thresholds this email also announces
    # None (every alert stored before consumers had quotas): a service's; "consumer": ``service``
    # holds the consumer's key.
    kind = UnicodeAttribute(null=True)

    @classmethod
    def record(cls, service: str, period_start: int, threshold: float, forecast: bool = False,
               kind: str = SERVICE, **fields) -> "Alert":
        """The ledger entry of one (service, period, threshold) alert, or of the period's forecast
        (of a consumer when ``kind`` says so: ``service`` is then the consumer's key)."""
        return cls(alert_pk(service, kind), alert_sk(period_start, threshold, forecast), service=service,
                   period_start=period_start, threshold=threshold, forecast=forecast,
                   kind=None if kind == SERVICE else kind, **fields)

    @property
    def subject_kind(self) -> str:
        return self.kind or SERVICE

    @property
    def ledger_key(self):
        """How the ledger names this alert within its period: the threshold, or FORECAST."""
        return FORECAST if self.forecast else float(self.threshold)


class AlertDue(_TableModel):
    """An alert claimed and not yet sent: kept until it is, so the sweep finds a lost one."""

    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
    alert_sk = UnicodeAttribute()
    kind = UnicodeAttribute(null=True)  # as Alert.kind

    @classmethod
    def of(cls, alert: "Alert") -> "AlertDue":
        kind = alert.subject_kind
        return cls(ALERTS_DUE_PK, alert_due_sk(alert.service, int(alert.period_start), alert.threshold,
                                               bool(alert.forecast), kind),
                   service=alert.service, alert_sk=alert.sk, kind=alert.kind)

    @property
    def alert_key(self) -> tuple:
        """The key of the alert this marker stands for."""
        return alert_pk(self.service, self.kind or SERVICE), self.alert_sk


class RulesReevaluation(_TableModel):
    """A rules change the alerts function has not finished judging: resume after ``after``."""

    class Meta(_TableModel.Meta):
        abstract = False

    after = UnicodeAttribute(null=True)
    requested_at = NumberAttribute()


class EnforcementState(_TableModel):
    """What the last reconcile left at the gateway (chalicelib/enforce/reconcile.py)."""

    class Meta(_TableModel.Meta):
        abstract = False

    last_reconcile_at = NumberAttribute(null=True)
    # [{"service", "plugin_id", "period_start", "period_end", "usage_bytes", "limit_bytes", "reject_at", ...}];
    # a consumer's block names it "consumer" (and "kind": "consumer") instead of "service"
    blocked = JSONAttribute(null=True)
    missing = JSONAttribute(null=True)  # services with a due block that the gateway does not know
    # Blocks started / ended that the alerts function has not settled yet (it tells the owners;
    # the stream brings it this item): [{"event": "block"|"unblock", "at", "service", ...}], a day at most
    notices = JSONAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    last_error_at = NumberAttribute(null=True)
    last_success_at = NumberAttribute(null=True)


class EnforcementNotice(_TableModel):
    """One owner notice of a block starting or ending, per service and period: claimed before sending."""

    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
    period_start = NumberAttribute()
    event = UnicodeAttribute()  # block | unblock
    claimed_at = NumberAttribute()
    status = UnicodeAttribute()  # pending | sent | no_recipients | gave_up
    sent_at = NumberAttribute(null=True)


class PushedBucket(_TableModel):
    """Pushed bytes of one service in one bucket of a level (chalicelib/core/pushed.py): kept
    apart from the scraped UsageBucket (whose values the collector sets absolutely), summed up
    with ADD. Per route and consumer, one flat map per direction: an update may add a key to an
    existing map (``SET m.#k = if_not_exists(m.#k, 0) + n``) but cannot create a nested one."""

    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
    level = UnicodeAttribute()
    start = NumberAttribute()
    ingress = NumberAttribute(default=0)
    egress = NumberAttribute(default=0)
    routes_in = MapAttribute(default=dict)
    routes_out = MapAttribute(default=dict)
    consumers_in = MapAttribute(default=dict)
    consumers_out = MapAttribute(default=dict)
    expires_at = TTLAttribute(null=True)


class EventMarker(_TableModel):
    """A pushed event (source, id) was claimed by ``batch``: it counts once, with that batch.
    Small on purpose (no source or id, only their digest): one write unit."""

    class Meta(_TableModel.Meta):
        abstract = False

    batch = UnicodeAttribute()
    expires_at = TTLAttribute()


class PushBatch(_TableModel):
    """A batch of events being applied: recorded before any marker, deleted once applied, so a
    batch whose request died is found (and finished) by the next push."""

    class Meta(_TableModel.Meta):
        abstract = False

    events = BinaryAttribute(legacy_encoding=False)  # zlib-compressed JSON of the valid events
    created_at = NumberAttribute()
    expires_at = TTLAttribute()


class PushApplied(_TableModel):
    """One group of a batch's bucket additions is applied (written in the same transaction)."""

    class Meta(_TableModel.Meta):
        abstract = False

    expires_at = TTLAttribute()


class PushedService(_TableModel):
    """A service bytes were ever pushed for: readers of period usage look for pushed bytes only
    for these (and for an item whose ``pushed_at`` says so), not with a query per service."""

    class Meta(_TableModel.Meta):
        abstract = False

    pushed_at = NumberAttribute()


class ImportJob(_TableModel):
    """A bulk import (register / batches / commit). ``status``: open, committing, committed."""

    class Meta(_TableModel.Meta):
        abstract = False

    import_id = UnicodeAttribute()
    status = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    batches = UnicodeSetAttribute(default=set)  # numbers of the batches received, as text
    events = NumberAttribute(default=0)  # valid events in the batches received (as last written)
    committed_through = NumberAttribute(null=True)  # the commit has applied the batches up to this one
    result = JSONAttribute(null=True)  # {"accepted", "duplicate", "refused"} once committed
    committed_at = NumberAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class ImportBatch(_TableModel):
    """One numbered batch of an import: its valid events, waiting for the commit."""

    class Meta(_TableModel.Meta):
        abstract = False

    events = BinaryAttribute(legacy_encoding=False)  # zlib-compressed JSON
    count = NumberAttribute()
    expires_at = TTLAttribute(null=True)


ALL_MODELS = (UsageBucket, ServiceUsage, ConsumerUsage, ConsumerRanking, CheckpointPage, CollectorState, ScheduleTick,
              ShardAssignment, Quota, QuotaRules, AuditEntry, Alert, AlertDue, RulesReevaluation, EnforcementState,
              EnforcementNotice, PushedBucket, EventMarker, PushBatch, PushApplied, ImportJob, ImportBatch, PushedService)


def bind(table_name: str, region: str, host: str | None = None) -> None:
    """Point every model at the configured table (bootstrap calls this once per configuration)."""
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.region = region
        model.Meta.host = host
        model._connection = None  # drop a connection made for an older configuration
