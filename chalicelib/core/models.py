"""PynamoDB models: every item Bandwidth Meter keeps, in one DynamoDB table.

Key design (pk / sk):

| item               | pk                 | sk                                  |
|--------------------|--------------------|-------------------------------------|
| UsageBucket        | USAGE#<service>    | <level>#<bucket start, ISO minute>  |
| ServiceUsage       | SERVICES           | <service>                           |
| CollectorState     | STATE              | collector                           |
| Quota              | QUOTA              | <service>                           |
| QuotaRules         | RULES              | current                             |
| AuditEntry         | AUDIT              | <ISO time>#<id>                     |
| Alert              | ALERT#<service>    | <period start ISO>#<threshold>      |

Keys are deterministic and values absolute, so a retried or overlapping
collector run writes the same items again (ARCHITECTURE.md, guarantee 2).
"""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model


class _TableModel(Model):
    class Meta:
        abstract = True
        table_name = "bandwidth-meter"
        region = "us-east-1"
        billing_mode = "PAY_PER_REQUEST"
        stream_view_type = "NEW_AND_OLD_IMAGES"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


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
    # Request counts by status and the request-latency histogram (see usage.BucketUsage.stats).
    stats = MapAttribute(default=dict)
    expires_at = TTLAttribute(null=True)


class ServiceUsage(_TableModel):
    """A service seen by the collector, with its usage in the current quota period.

    ``through`` is the collector watermark up to which the period usage counts;
    the collector sets absolute values guarded by it, never ADDs.
    """

    class Meta(_TableModel.Meta):
        abstract = False

    service = UnicodeAttribute()
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


class CollectorState(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    watermark = NumberAttribute(null=True)  # minutes before this are final
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


class Quota(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    body = JSONAttribute()  # the validated quota document
    updated_at = NumberAttribute()


class QuotaRules(_TableModel):
    class Meta(_TableModel.Meta):
        abstract = False

    rules = JSONAttribute()  # ordered list of {"pattern", ...quota fields}
    updated_at = NumberAttribute()


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
    status = UnicodeAttribute()  # pending | sent | covered | failed
    usage_bytes = NumberAttribute()
    limit_bytes = NumberAttribute()
    recipients = ListAttribute(default=list)
    crossed_at = NumberAttribute()
    claimed_at = NumberAttribute(null=True)
    sent_at = NumberAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    covered_by = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    forecast = BooleanAttribute(default=False)
    forecast_eta = NumberAttribute(null=True)  # when the trend reaches 100 % (forecast alerts)
    delivered = ListAttribute(default=list)  # channels done ("email", "webhook"), so a retry resends none


ALL_MODELS = (UsageBucket, ServiceUsage, CollectorState, Quota, QuotaRules, AuditEntry, Alert)


def configure(table_name: str, region: str, host: str | None = None) -> None:
    """Point every model at the configured table (called once by bootstrap)."""
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.region = region
        model.Meta.host = host
        model._connection = None  # drop a connection made for an older configuration
