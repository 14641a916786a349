"""The scheduled run (chalicelib/schedule.py): collect, then the fleet's tick and reconcile, whose
failures never fail the run and which a failed collect never skips."""
from types import SimpleNamespace

import pytest

from chalicelib import schedule
from chalicelib.collect.collector import CollectorRunFailed
from chalicelib.collect.report import RunReport
from chalicelib.core.errors import GatewayError, StoreError

NOW = 1_796_083_200.0


class FakeCollector:
    def __init__(self, outcome):
        self.outcome = outcome
        self.runs = []

    def run(self, now):
        self.runs.append(now)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return RunReport(status=self.outcome, minutes=1 if self.outcome == "ok" else 0)


class FakeStore:
    def __init__(self, fail=False):
        self.ticks, self.fail = [], fail

    def tick(self, now):
        if self.fail:
            raise StoreError("DynamoDB throttled the tick")
        self.ticks.append(now)


class FakeEnforcer:
    def __init__(self, fail=None):
        self.reconciled, self.fail = [], fail

    def reconcile(self, now):
        self.reconciled.append(now)
        if self.fail:
            raise self.fail
        return SimpleNamespace(as_dict=lambda: {"blocked": ["pay"], "errors": []})


class Deps:
    """bootstrap's parts the schedule uses; ``enforcer`` is built only when asked for."""

    def __init__(self, outcome="ok", enforcer=None, store=None):
        self.collectors = {}
        self.outcome = outcome
        self._enforcer = enforcer if enforcer is not None else FakeEnforcer()
        self.store = store or FakeStore()
        self.enforcer_built = False

    def clock(self):
        return NOW

    def collector_for(self, shard):
        return self.collectors.setdefault(shard, FakeCollector(self.outcome))

    @property
    def enforcer(self):
        self.enforcer_built = True
        return self._enforcer


def test_a_run_collects_then_ticks_and_reconciles_and_returns_both_reports():
    deps = Deps()
    result = schedule.scheduled_run(deps, shard=0)
    assert result["status"] == "ok" and result["minutes"] == 1
    assert result["enforcement"] == {"blocked": ["pay"], "errors": []}
    assert deps.collectors[0].runs == [NOW] and deps.store.ticks == [NOW] and deps._enforcer.reconciled == [NOW]


@pytest.mark.parametrize("failure", [CollectorRunFailed("Prometheus unreachable"), KeyError("service")])
def test_a_failed_collect_still_ticks_and_reconciles_and_is_raised(failure):
    deps = Deps(outcome=failure)
    with pytest.raises(type(failure)):
        schedule.scheduled_run(deps, shard=0)
    assert deps.store.ticks == [NOW] and deps._enforcer.reconciled == [NOW]


def test_a_skipped_collect_still_ticks_and_reconciles():
    """A run that finds the lease held still keeps blocks and the alerts' sweep on time."""
    deps = Deps(outcome="skipped")
    assert schedule.scheduled_run(deps, shard=0)["enforcement"]["blocked"] == ["pay"]
    assert deps.store.ticks == [NOW]


@pytest.mark.parametrize("failure", [GatewayError("Kong Admin API answered HTTP 500"), RuntimeError("a bug")])
def test_a_failed_reconcile_is_reported_and_never_fails_the_run(failure):
    deps = Deps(enforcer=FakeEnforcer(fail=failure))
    result = schedule.scheduled_run(deps, shard=0)
    assert result["status"] == "ok" and result["enforcement"] == {"errors": [str(failure)]}


def test_a_failed_tick_neither_fails_the_run_nor_skips_the_reconcile():
    deps = Deps(store=FakeStore(fail=True))
    result = schedule.scheduled_run(deps, shard=0)
    assert result["status"] == "ok" and deps._enforcer.reconciled == [NOW]


def test_a_failed_collect_is_raised_even_when_the_reconcile_fails_too():
    deps = Deps(outcome=CollectorRunFailed("Prometheus unreachable"), enforcer=FakeEnforcer(fail=RuntimeError("x")))
    with pytest.raises(CollectorRunFailed, match="Prometheus unreachable"):
        schedule.scheduled_run(deps, shard=0)


def test_a_fixed_shard_only_collects():
    """The fleet's jobs run once, on shard 0's worker; a fixed shard never builds the enforcer
    (nor fetches the Kong Admin token)."""
    deps = Deps()
    result = schedule.scheduled_run(deps, shard=2)
    assert result["status"] == "ok" and result["enforcement"] is None
    assert deps.collectors[2].runs == [NOW] and deps.store.ticks == [] and not deps.enforcer_built


def test_without_enforcement_the_report_says_none():
    deps = Deps()
    deps._enforcer = None
    result = schedule.scheduled_run(deps, shard=0)
    assert result["enforcement"] is None and deps.store.ticks == [NOW]
