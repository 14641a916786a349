"""The reconcile: make the gateway's blocks match the blocks due (ARCHITECTURE.md, guarantee 7).

Every minute (from the collector's run, after its chunks) the blocks due are computed from the
stored usage and quotas, compared with the request-termination plugins tagged ours in Kong,
and Kong is changed to match: missing blocks added (also one deleted by hand), blocks no longer
due lifted (a new period, a raised limit, a deleted quota, ``action: warn``), duplicates removed.
It never waits for traffic, which a block stops. Kong failing is recorded and reported, never
raised: the next minute tries again. Owners hear once when a block starts and once when it ends.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, List

from chalicelib.core.enforcement import Block, block_candidates, due_blocks
from chalicelib.core.errors import BandwidthMeterError, GatewayError, GatewayServiceNotFound
from chalicelib.enforce.kong_plugin import block_message

log = logging.getLogger(__name__)
UNSENT_RETRY_SECONDS = 86400  # how long a block-ended notice that fails is tried again

MAX_CHANGES = 50  # Kong writes per reconcile; more wait a minute, so one run stays bounded


@dataclass
class ReconcileReport:
    blocked: List[str] = field(default_factory=list)  # blocked at the gateway after this run
    added: List[str] = field(default_factory=list)
    lifted: List[str] = field(default_factory=list)
    missing: List[dict] = field(default_factory=list)  # due, but Kong has no such service
    errors: List[str] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)  # "block:<service>" / "unblock:<service>" sent

    def as_dict(self) -> dict:
        return asdict(self)


class Reconciler:
    def __init__(self, kong, store, quotas, book, notifier=None, max_changes: int = MAX_CHANGES):
        self.kong = kong
        self.store = store
        self.quotas = quotas
        self.book = book
        self.notifier = notifier
        self.max_changes = max_changes

    def reconcile(self, now: float) -> ReconcileReport:
        report = ReconcileReport()
        state = self.book.state()
        previous = {entry["service"]: entry for entry in (state.blocked or [])}
        # Block-ended notices a failed delivery left behind go out first (a lifted block is
        # not in ``previous`` any more, so nothing else would tell its owners); for a day at most.
        unsent = [entry for entry in (state.unsent or []) if not self._notify("unblock", entry, now, report)
                  and not self._give_up(entry, now, report)]
        snapshot = self.quotas.load()
        due = due_blocks(self.store, block_candidates(self.store, snapshot), snapshot, now)
        try:
            ours = self.kong.list_our_plugins().blocks
        except GatewayError as e:
            # Nothing is known of the gateway: keep what the last run recorded, report the failure.
            report.errors.append(str(e))
            report.blocked = sorted(previous)
            self._record(now, list(previous.values()), [], report, unsent, state)
            return report
        plugins: Dict[str, List] = {}
        for plugin in ours:
            plugins.setdefault(plugin.service, []).append(plugin)
        changes = 0
        blocked: List[dict] = []
        for service in sorted(due):
            block, found = due[service], plugins.pop(service, [])
            if not found and changes >= self.max_changes:
                report.errors.append(f"more than {self.max_changes} changes due; {service!r} waits for the next run")
                continue
            try:
                if found:
                    plugin_id = found[0].id
                    for extra in found[1:]:  # a duplicate (added by hand, or by an older version)
                        self.kong.unblock(extra.id)
                else:
                    changes += 1
                    plugin_id = self.kong.block(service, block_message(block))
                    report.added.append(service)
            except GatewayServiceNotFound as e:
                report.missing.append({"service": service, "error": str(e)})
                continue
            except GatewayError as e:
                report.errors.append(str(e))
                if service in previous:  # most likely still in place: keep it (and its notice) on record
                    blocked.append(previous[service])
                continue
            entry = self._entry(block, plugin_id, snapshot)
            # Told once: a notice that failed is tried again by the next run; the ledger's claim
            # keeps a restored (hand-deleted) block from telling anyone twice.
            entry["notified"] = bool(previous.get(service, {}).get("notified")) \
                or self._notify("block", entry, now, report)
            blocked.append(entry)
        for service in sorted(plugins):
            if changes >= self.max_changes:
                report.errors.append(f"more than {self.max_changes} changes due; lifting {service!r} waits")
                blocked.append(previous.get(service, {"service": service}))
                continue
            try:
                for plugin in plugins[service]:
                    changes += 1
                    self.kong.unblock(plugin.id)
            except GatewayError as e:
                report.errors.append(str(e))
                blocked.append(previous.get(service, {"service": service}))
                continue
            report.lifted.append(service)
        # Owners of blocks that ended (lifted now, or gone from Kong by hand and no longer due).
        for service in sorted(set(previous) - set(due)):
            if "period_start_ts" not in previous[service]:
                continue  # kept on record through a failure only: its period is not known
            if service in report.lifted or service not in plugins:
                ended = {**previous[service], "reason": _lift_reason(previous[service], snapshot, now),
                         "ended_at": now}
                if not self._notify("unblock", ended, now, report):
                    unsent.append(ended)
        report.blocked = sorted(entry["service"] for entry in blocked)
        self._record(now, blocked, report.missing, report, unsent, state)
        if report.added or report.lifted or report.errors or report.missing:
            log.info("enforcement: blocked %s, added %s, lifted %s, missing %s, errors %s", report.blocked,
                     report.added, report.lifted, [m["service"] for m in report.missing], report.errors)
        return report

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _entry(block: Block, plugin_id: str, snapshot) -> dict:
        """What the state keeps of a block: enough to tell its owners when it ends, even if the
        quota is deleted by then."""
        quota = snapshot.quota_for(block.service)
        return {**block.as_dict(), "period_start_ts": block.period_start, "period_end_ts": block.period_end,
                "plugin_id": plugin_id,
                "notify": list(quota.notify), "webhook_url": quota.webhook_url, "message": block_message(block)}

    def _notify(self, event: str, entry: dict, now: float, report: ReconcileReport) -> bool:
        """Whether the owners are told (now, or before: the ledger holds the notice already)."""
        if self.notifier is None:
            return True
        try:
            if self.notifier.notify(event, entry, now):
                report.notices.append(f"{event}:{entry['service']}")
            return True
        except BandwidthMeterError as e:
            report.errors.append(f"telling the owners of {entry['service']!r} ({event}) failed: {e}")
            return False

    @staticmethod
    def _give_up(entry: dict, now: float, report: ReconcileReport) -> bool:
        """Whether a block-ended notice has failed for longer than UNSENT_RETRY_SECONDS (then it
        is dropped, and said so: a recipient refused for a day will not be reached by a retry)."""
        if now - float(entry.get("ended_at") or now) <= UNSENT_RETRY_SECONDS:
            return False
        report.errors.append(f"gave up telling the owners of {entry['service']!r} that its block ended")
        log.error("enforcement: gave up the block-ended notice of %s after a day of failures", entry["service"])
        return True

    def _record(self, now: float, blocked: List[dict], missing: List[dict], report: ReconcileReport,
                unsent: List[dict], previous) -> None:
        problems = report.errors + [m["error"] for m in missing]
        self.book.record(now, blocked, missing, "; ".join(problems)[:1000] if problems else None, unsent, previous)


def _lift_reason(entry: dict, snapshot, now: float) -> str:
    if not snapshot.quota_for(entry["service"]).rejects:
        return "the quota no longer rejects (it was deleted, or its action is now warn)"
    if now >= int(entry.get("period_end_ts") or 0):
        return "a new quota period began"
    return "usage is below the reject level (the limit was raised)"
