"""The reconcile: make the gateway's blocks match the blocks due (ARCHITECTURE.md, guarantee 7).

Every minute the blocks due are computed from the stored usage and quotas, compared with the
plugins tagged ours in Kong, and Kong is changed to match, in this order:
1. **drift** removed: a plugin tagged ours that is not exactly one of ours (global, scoped to a
   route, to a consumer with no block due or on record, to a consumer and a service, another
   plugin) hurts more than the one service a block means; always, whatever else is due;
2. blocks no longer due **lifted** (a new period, a raised limit, a deleted quota, ``action:
   warn``), duplicates removed: never waiting behind an add;
3. missing blocks **added** (also one deleted by hand).
Only changes made count against the per-run budgets (one for lifts, one for adds): a service
Kong does not know (deleted, renamed, another workspace, a name that is not a Kong service
name) is reported under ``missing`` and costs nothing, so it cannot starve the others. Kong
failing is recorded and reported, never raised; after MAX_FAILURES failures in one run the rest
waits a minute (a Kong that times out must not hold the run for long). The next minute tries again.

Consumer blocks are reconciled in the same run, under the same budgets: a consumer over a reject
quota gets our request-termination plugin scoped to it (it is refused on every service), and our
consumer-scoped plugins are blocks for the consumers with a block due or on record (lifted when
no longer due), drift for any other. A ``ws:name`` key is looked up and written in workspace ws.

The reconcile sends nothing to owners: it records in the enforcement state which blocks started
and ended (``notices``), the state item's stream record takes them to the alerts function, which
tells the owners once each (chalicelib/notify/enforcement_mail.py). A notice stays in the state
until the ledger shows it settled, for a day at most (then it is given up, and said so).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from chalicelib.core.consumer_usage import ConsumerUsageReader
from chalicelib.core.enforcement import Block, BlockKey, all_due_blocks, entry_key
from chalicelib.core.enforcement_ledger import NOTICE_RETRY_SECONDS
from chalicelib.core.errors import GatewayError, GatewayServiceNotFound, StoreError
from chalicelib.core.models import CONSUMER, SERVICE
from chalicelib.core.names import DEFAULT_WORKSPACE, SEPARATOR, workspace_and_name
from chalicelib.enforce.kong_admin import Drift, OurPlugins
from chalicelib.enforce.kong_plugin import PLUGIN, block_message

log = logging.getLogger(__name__)
MAX_CHANGES = 50  # Kong writes per reconcile, for lifts and for adds each; more wait a minute
MAX_FAILURES = 5  # Kong failures per reconcile before the rest waits for the next run
MAX_NOTICES = 200  # notices the state carries at most (the item stays far below DynamoDB's 400 KB)


@dataclass
class ReconcileReport:
    # Names as ``label`` spells them: a service's key, or "consumer <key>".
    blocked: List[str] = field(default_factory=list)  # blocked at the gateway after this run
    added: List[str] = field(default_factory=list)
    lifted: List[str] = field(default_factory=list)
    missing: List[dict] = field(default_factory=list)  # due, but Kong has no such service (or consumer)
    errors: List[str] = field(default_factory=list)
    drift: List[dict] = field(default_factory=list)  # plugins tagged ours but not ours, removed
    notices: List[str] = field(default_factory=list)  # "block:<service>" / "unblock:<service>" recorded

    def as_dict(self) -> dict:
        return asdict(self)


class _Budget:
    """Changes made and failures met in one run: only what was done counts."""

    def __init__(self, max_changes: int, max_failures: int):
        self.max_changes, self.max_failures = max_changes, max_failures
        self.lifts = self.adds = self.failures = 0

    def failing(self) -> bool:
        return self.failures >= self.max_failures


class Reconciler:
    def __init__(self, kong, store, quotas, ledger, max_changes: int = MAX_CHANGES, max_failures: int = MAX_FAILURES,
                 consumers=None):
        self.kong = kong
        self.store = store
        self.quotas = quotas
        self.ledger = ledger
        self.consumers = consumers or ConsumerUsageReader(store)  # the consumers' usage items
        self.max_changes = max_changes
        self.max_failures = max_failures

    def reconcile(self, now: float) -> ReconcileReport:
        report = ReconcileReport()
        state = self.ledger.state()
        previous = {entry_key(entry): entry for entry in (state.blocked or [])}
        notices = self._pending_notices(state.notices or [], now, report)
        snapshot = self.quotas.load()
        due = all_due_blocks(self.store, self.consumers, snapshot, now)
        try:
            ours = self._list_ours(set(due) | set(previous))
        except GatewayError as e:
            # Nothing is known of the gateway: keep what the last run recorded, report the failure.
            report.errors.append(str(e))
            report.blocked = sorted(label(key) for key in previous)
            self._record(now, list(previous.values()), [], report, notices, state)
            return report
        budget = _Budget(self.max_changes, self.max_failures)
        plugins: Dict[BlockKey, List] = {}
        strays = []
        for plugin in ours.blocks:
            key = getattr(plugin, "key", (SERVICE, plugin.service))
            if key[0] == CONSUMER and key not in due and key not in previous:
                # Scoped to a consumer that has no block due and none on record: not a block of ours.
                strays.append(Drift(plugin.id, PLUGIN, "scoped to a consumer that has no block due",
                                    getattr(plugin, "workspace", None)))
                continue
            plugins.setdefault(key, []).append(plugin)
        self._remove_drift(list(ours.drift) + strays, report)
        blocked: List[dict] = []
        gone = self._lift(sorted(set(plugins) - set(due)), plugins, previous, budget, blocked, report)
        for key in sorted(due):
            entry = self._apply(due[key], plugins.get(key, []), previous, snapshot, budget, report)
            if entry is not None:
                blocked.append(entry)
                if key not in previous:
                    notices.append(self._notice("block", entry, now, report))
        # Owners of blocks that ended (lifted now, or gone from Kong by hand and no longer due).
        for key in sorted(set(previous) - set(due)):
            if "period_start_ts" in previous[key] and key in gone:
                ended = {**previous[key], "reason": _lift_reason(previous[key], snapshot, now), "ended_at": now}
                notices.append(self._notice("unblock", ended, now, report))
        report.blocked = sorted(label(entry_key(entry)) for entry in blocked)
        self._record(now, blocked, report.missing, report, notices, state)
        if report.added or report.lifted or report.errors or report.missing or report.drift:
            log.info("enforcement: blocked %s, added %s, lifted %s, missing %s, drift %s, errors %s", report.blocked,
                     report.added, report.lifted, [label(entry_key(m)) for m in report.missing], report.drift,
                     report.errors)
        return report

    # -- the steps ---------------------------------------------------------------------------
    def _list_ours(self, keys) -> OurPlugins:
        """Our plugins in the configured workspace, and in every other workspace a block is due or
        on record in (a ``ws:name`` key)."""
        workspaces = sorted({w for w in (workspace_of(name) for _, name in keys) if w is not None})
        return self.kong.list_our_plugins(workspaces) if workspaces else self.kong.list_our_plugins()

    def _unblock(self, plugin) -> None:
        workspace = getattr(plugin, "workspace", None)
        if workspace:
            self.kong.unblock(plugin.id, workspace)
        else:
            self.kong.unblock(plugin.id)

    def _remove_drift(self, drift, report: ReconcileReport) -> None:
        """Plugins tagged ours that are not ours: removed first and always (a global one blocks
        the whole gateway), each reported."""
        for plugin in drift:
            try:
                self._unblock(plugin)
            except GatewayError as e:
                report.errors.append(f"removing drifted plugin {plugin.id} ({plugin.why}) failed: {e}")
                continue
            report.drift.append(plugin.as_dict())
            log.warning("enforcement: removed plugin %s tagged ours but %s", plugin.id, plugin.why)

    def _lift(self, keys: List[BlockKey], plugins: Dict[BlockKey, List], previous: Dict[BlockKey, dict],
              budget: _Budget, blocked: List[dict], report: ReconcileReport) -> set:
        """Lift blocks no longer due; return the keys whose block is gone from the gateway."""
        gone = set(previous) - set(plugins)  # deleted by hand: gone already
        for key in keys:
            if budget.lifts >= budget.max_changes or budget.failing():
                report.errors.append(f"lifting {label(key)!r} waits for the next run (this run's Kong budget is spent)")
                blocked.append(previous.get(key, _bare_entry(key)))
                continue
            try:
                for plugin in plugins[key]:
                    self._unblock(plugin)
                    budget.lifts += 1
            except GatewayError as e:
                budget.failures += 1
                report.errors.append(str(e))
                blocked.append(previous.get(key, _bare_entry(key)))
                continue
            report.lifted.append(label(key))
            gone.add(key)
        return gone

    def _apply(self, block: Block, found: List, previous: Dict[BlockKey, dict], snapshot, budget: _Budget,
               report: ReconcileReport) -> Optional[dict]:
        """Make one due block be at the gateway; its state entry, or None when it is not there."""
        key, name = block.key, label(block.key)
        if not found and (budget.adds >= budget.max_changes or budget.failing()):
            report.errors.append(f"blocking {name!r} waits for the next run (this run's Kong budget is spent)")
            return previous.get(key)
        try:
            if found:
                plugin_id = found[0].id
                for extra in found[1:]:  # a duplicate (added by hand, or by an older version)
                    self._unblock(extra)
            else:
                if block.kind == CONSUMER:
                    plugin_id = self.kong.block_consumer(block.service, block_message(block))
                else:
                    plugin_id = self.kong.block(block.service, block_message(block))
                budget.adds += 1
                report.added.append(name)
        except GatewayServiceNotFound as e:  # impossible, not failed: costs nothing, retried next run
            report.missing.append({**_bare_entry(key), "error": str(e)})
            return None
        except GatewayError as e:
            budget.failures += 1
            report.errors.append(str(e))
            return previous.get(key)  # most likely still in place: keep it on record
        return self._entry(block, plugin_id, snapshot)

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _entry(block: Block, plugin_id: str, snapshot) -> dict:
        """What the state keeps of a block: enough to tell its owners when it ends, even if the
        quota is deleted by then."""
        quota = _quota_of(snapshot, block.key)
        return {**block.as_dict(), "period_start_ts": block.period_start, "period_end_ts": block.period_end,
                "plugin_id": plugin_id,
                "notify": list(quota.notify), "webhook_url": quota.webhook_url, "message": block_message(block)}

    @staticmethod
    def _notice(event: str, entry: dict, now: float, report: ReconcileReport) -> dict:
        report.notices.append(f"{event}:{label(entry_key(entry))}")
        return {**entry, "event": event, "at": now}

    def _pending_notices(self, notices: List[dict], now: float, report: ReconcileReport) -> List[dict]:
        """The notices of earlier runs the alerts function has not settled yet, for a day at most
        (then given up, and said so: a recipient refused for a day will not be reached by a retry)."""
        pending = []
        for notice in notices:
            kind, name = entry_key(notice)
            try:
                by_kind = {"kind": kind} if kind != SERVICE else {}
                if self.ledger.notice_settled(name, int(notice.get("period_start_ts") or 0), notice["event"],
                                              **by_kind):
                    continue
            except StoreError as e:
                report.errors.append(str(e))  # unknown: offer it again; the claim keeps it to one
            if now - float(notice.get("at") or now) > NOTICE_RETRY_SECONDS:
                report.errors.append(f"gave up telling the owners of {label((kind, name))!r} that its block "
                                     f"{'started' if notice['event'] == 'block' else 'ended'}")
                log.error("enforcement: gave up the %s notice of %s after a day unsent", notice["event"],
                          label((kind, name)))
                continue
            pending.append(notice)
        return pending

    def _record(self, now: float, blocked: List[dict], missing: List[dict], report: ReconcileReport,
                notices: List[dict], previous) -> None:
        problems = report.errors + [m["error"] for m in missing]
        self.ledger.record(now, blocked, missing, "; ".join(problems)[:1000] if problems else None,
                         notices[-MAX_NOTICES:], previous)


def label(key: BlockKey) -> str:
    """How reports and logs name a block: a service by its key, a consumer as ``consumer <key>``
    (Kong allows no space in a service name, so the two never read alike)."""
    kind, name = key
    return name if kind == SERVICE else f"consumer {name}"


def workspace_of(name: str) -> Optional[str]:
    """The workspace a key names outside the default one (None: the configured workspace)."""
    if SEPARATOR not in name:
        return None
    workspace, _ = workspace_and_name(name)
    return None if workspace == DEFAULT_WORKSPACE else workspace


def _bare_entry(key: BlockKey) -> dict:
    kind, name = key
    return {"service": name} if kind == SERVICE else {"consumer": name, "kind": CONSUMER}


def _quota_of(snapshot, key: BlockKey):
    kind, name = key
    return snapshot.quota_for(name) if kind == SERVICE else snapshot.quota_for_consumer(name)


def _lift_reason(entry: dict, snapshot, now: float) -> str:
    if not _quota_of(snapshot, entry_key(entry)).rejects:
        return "the quota no longer rejects (it was deleted, or its action is now warn)"
    if now >= int(entry.get("period_end_ts") or 0):
        return "a new quota period began"
    return "usage is below the reject level (the limit was raised)"
