"""The scheduled minute, job after job: collect, then (once for the whole fleet) the tick, the
finishing of crashed pushes and the reconcile.

With SHARD_COUNT > 1 the schedule fans out to one worker per shard (collect/fanout.py); every
worker collects its shard, and the fleet's jobs run once, on shard 0's (the catch-all). They run
whatever the collect did: a block must lift at its period's end whether or not Prometheus
answers (no traffic will come to prompt it), and the alerts' sweep must not stop when collecting
does, and a push batch whose request died must be finished even when no later push comes to
finish it (chalicelib/core/pushed.py). Their own failures are logged and reported, and never fail
the run or hide its failure.
Like bootstrap, this module joins the groups (collect, enforce) that never import each other.
"""
from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger(__name__)

FLEET_SHARD = 0  # the unsharded collector, or the catch-all of a sharded fleet


def scheduled_run(deps, shard: int) -> dict:
    """Shard ``shard``'s scheduled run (``deps``: bootstrap.current()); the collector's run
    report, with the reconcile's report as ``enforcement`` (None: not this shard's job, or
    enforcement is off). A failed collect is raised after the fleet's jobs ran."""
    now = deps.clock()
    enforcement = None
    try:
        report = deps.collector_for(shard).run(now=now)
    finally:
        if shard == FLEET_SHARD:
            tick(deps.store, now)
            finish_pushes(getattr(deps.store, "pushed", None), now)
            enforcement = reconcile(deps.enforcer, now)
    return {**report.as_dict(), "enforcement": enforcement}


def tick(store, now: float) -> None:
    """The alerts function's clock: it sweeps on the tick's stream record."""
    try:
        store.tick(now)
    except Exception:  # the sweep waits a minute; the run goes on
        log.exception("schedule: writing the tick failed")


def finish_pushes(pushed, now: float) -> None:
    """Finish push batches left recorded by requests that died (``pushed``: the store's
    PushedUsage; None for a store without pushed usage). A later push would finish them too, but
    none may come: without this their bytes would wait, uncounted, for the next push."""
    if pushed is None:
        return
    try:
        finished = pushed.resume_stale(now)
    except Exception:  # the record stays: the next run (or push) tries again
        log.exception("schedule: finishing unfinished pushes failed")
        return
    if finished:
        log.info("schedule: finished %d push batch(es) left by requests that died", finished)


def reconcile(enforcer, now: float) -> Optional[dict]:
    """Make the gateway's blocks match the quotas; its failures are reported (in its state and
    here), never the run's."""
    if enforcer is None:
        return None
    try:
        return enforcer.reconcile(now).as_dict()
    except Exception as e:
        log.exception("schedule: the enforcement reconcile failed")
        return {"errors": [str(e)]}
