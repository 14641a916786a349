"""The reconcile's budgets with a scripted Kong: only changes made count, lifts never wait behind
adds, and a failing Kong stops the run early instead of holding it for every service."""
from chalicelib.core.errors import GatewayError, GatewayServiceNotFound
from chalicelib.core.quotas import QuotaSnapshot, normalize_quota
from chalicelib.enforce.kong_admin import BlockPlugin, OurPlugins
from chalicelib.enforce.reconcile import Reconciler
from tests.fakes.usage_store import holding
from tests.unit.test_enforcement import DEC1, usage_item

NOW = DEC1 - 60


class ScriptedKong:
    def __init__(self, blocks=(), unknown=(), failing=()):
        self.blocks, self.unknown, self.failing = list(blocks), set(unknown), set(failing)
        self.calls = []

    def list_our_plugins(self):
        return OurPlugins(blocks=self.blocks)

    def block(self, service, message):
        self.calls.append(("block", service))
        if service in self.unknown:
            raise GatewayServiceNotFound(f"Kong has no service named {service!r}")
        if service in self.failing:
            raise GatewayError("Kong Admin API failed blocking after 3 attempts: HTTP 502")
        return f"plugin-{service}"

    def unblock(self, plugin_id):
        self.calls.append(("unblock", plugin_id))


class Quotas:
    def __init__(self, services):
        self.snapshot = QuotaSnapshot({s: normalize_quota({"limit_bytes": 1_000, "action": "reject"})
                                       for s in services}, [])

    def load(self):
        return self.snapshot


class Book:
    def state(self):
        from chalicelib.core.models import ENFORCEMENT_KEY, EnforcementState

        return EnforcementState(*ENFORCEMENT_KEY)

    def record(self, *args):
        self.recorded = args


def reconciler(kong, due, **options):
    return Reconciler(kong, holding([usage_item(s, 5_000) for s in due]), Quotas(due), Book(), **options)


def test_services_kong_does_not_know_cost_no_budget():
    ghosts = [f"a-ghost-{i:02d}" for i in range(60)]
    kong = ScriptedKong(unknown=ghosts)
    report = reconciler(kong, ghosts + ["pay"], max_changes=2).reconcile(NOW)
    assert report.added == ["pay"] and len(report.missing) == 60 and report.errors == []


def test_adds_stop_at_the_budget_and_say_so():
    report = reconciler(ScriptedKong(), ["a", "b", "c"], max_changes=2).reconcile(NOW)
    assert report.added == ["a", "b"]
    assert report.errors == ["blocking 'c' waits for the next run (this run's Kong budget is spent)"]


def test_lifts_come_first_with_their_own_budget():
    kong = ScriptedKong(blocks=[BlockPlugin("p-old", "old", "sid-old")])
    report = reconciler(kong, ["a", "b"], max_changes=1).reconcile(NOW)
    assert kong.calls[0] == ("unblock", "p-old") and report.lifted == ["old"] and report.added == ["a"]


def test_a_failing_kong_ends_the_run_after_max_failures():
    names = [f"s-{i:02d}" for i in range(20)]
    kong = ScriptedKong(failing=names)
    report = reconciler(kong, names, max_failures=5).reconcile(NOW)
    assert len([c for c in kong.calls if c[0] == "block"]) == 5
    assert sum("waits for the next run" in e for e in report.errors) == 15
