"""The reconcile with consumers, on the in-memory Kong: consumer blocks are keyed apart from
service blocks, share the run's budgets (lifts first), and a block on record is lifted, not
drift."""
from chalicelib.core.models import CONSUMERS_PK, ConsumerUsage
from chalicelib.core.quotas import QuotaSnapshot, normalize_quota
from chalicelib.enforce.kong_admin import BlockPlugin
from chalicelib.enforce.reconcile import Reconciler
from tests.fakes.kong import InMemoryKongAdmin
from tests.fakes.usage_store import holding
from tests.unit.test_enforcement import DEC1, NOV, usage_item

NOW = DEC1 - 60
REJECT = normalize_quota({"limit_bytes": 1_000, "action": "reject", "notify": ["owner@example.com"]})


def consumer_item(consumer, total):
    return ConsumerUsage(CONSUMERS_PK, consumer, consumer=consumer, first_seen=NOV.start, last_active=NOV.start,
                         period_kind="month", period_anchor=1, period_start=NOV.start, period_end=NOV.end,
                         ingress=0, egress=total, total=total, through=DEC1 - 60)


class Consumers:
    def __init__(self, items):
        self.items = items

    def list_consumers(self, after=None):
        return self.items

    def get_consumers(self, names):
        return [i for i in self.items if i.consumer in names]


class Quotas:
    def __init__(self, services=(), consumers=()):
        self.snapshot = QuotaSnapshot({s: REJECT for s in services}, [], {c: REJECT for c in consumers})

    def load(self):
        return self.snapshot


class Ledger:
    def __init__(self):
        from chalicelib.core.models import ENFORCEMENT_KEY, EnforcementState

        self.item = EnforcementState(*ENFORCEMENT_KEY)

    def state(self):
        return self.item

    def record(self, at, blocked, missing, error, notices, previous):
        from chalicelib.core.models import ENFORCEMENT_KEY, EnforcementState

        self.item = EnforcementState(*ENFORCEMENT_KEY, blocked=blocked, missing=missing, notices=notices,
                                     last_error=error)

    def notice_settled(self, *args, **kwargs):
        return False


def test_a_service_and_a_consumer_of_the_same_name_are_two_blocks():
    kong = InMemoryKongAdmin(services=["acme"], consumers=["acme"])
    ledger = Ledger()
    report = Reconciler(kong, holding([usage_item("acme", 5_000)]), Quotas(["acme"], ["acme"]), ledger,
                        consumers=Consumers([consumer_item("acme", 5_000)])).reconcile(NOW)
    assert report.added == ["consumer acme", "acme"] and report.blocked == ["acme", "consumer acme"]
    assert sorted(p.get("kind", "service") for p in kong.plugins.values()) == ["consumer", "service"]
    assert sorted((e.get("kind"), e.get("service") or e.get("consumer")) for e in ledger.item.blocked) == [
        ("consumer", "acme"), ("service", "acme")]
    assert report.notices == ["block:consumer acme", "block:acme"]


def test_a_consumer_block_on_record_and_no_longer_due_is_lifted_with_a_notice_not_removed_as_drift():
    kong = InMemoryKongAdmin(consumers=["acme"])
    ledger = Ledger()
    consumers = Consumers([consumer_item("acme", 5_000)])
    Reconciler(kong, holding([]), Quotas(consumers=["acme"]), ledger, consumers=consumers).reconcile(NOW)
    report = Reconciler(kong, holding([]), Quotas(), ledger, consumers=consumers).reconcile(NOW + 60)
    assert report.lifted == ["consumer acme"] and report.drift == [] and kong.plugins == {}
    assert report.notices == ["unblock:consumer acme"]
    assert ledger.item.notices[-1]["reason"].startswith("the quota no longer rejects")


def test_consumer_lifts_and_adds_share_the_runs_budgets_lifts_first():
    kong = InMemoryKongAdmin(services=["a", "b"])
    kong.plugins["p-old"] = {"service": "old", "message": None, "ours": True, "kind": "consumer"}
    ledger = Ledger()
    ledger.item.blocked = [{"consumer": "old", "kind": "consumer", "plugin_id": "p-old"}]
    report = Reconciler(kong, holding([usage_item("a", 5_000), usage_item("b", 5_000)]), Quotas(["a", "b"]), ledger,
                        consumers=Consumers([]), max_changes=1).reconcile(NOW)
    assert report.lifted == ["consumer old"] and report.added == ["a"]
    assert report.errors == ["blocking 'b' waits for the next run (this run's Kong budget is spent)"]


def test_an_unknown_consumer_plugin_not_on_record_is_drift():
    class Kong(InMemoryKongAdmin):
        removed = []

        def list_our_plugins(self, workspaces=()):
            found = super().list_our_plugins(workspaces)
            found.blocks.append(BlockPlugin("p-stray", "eve", "cid-eve", "x", "consumer"))
            return found

        def unblock(self, plugin_id, workspace=None):
            self.removed.append(plugin_id)

    kong = Kong()
    report = Reconciler(kong, holding([]), Quotas(), Ledger(), consumers=Consumers([])).reconcile(NOW)
    assert kong.removed == ["p-stray"] and report.drift[0]["why"] == "scoped to a consumer that has no block due"
