"""The enforcement book: what the last reconcile left at the gateway, and the owner notices
of blocks starting and ending (claimed with a conditional write, so each goes out once)."""
from __future__ import annotations

from typing import List, Optional

from pynamodb.exceptions import DeleteError, PutError, PynamoDBException, UpdateError

from chalicelib.core.errors import StoreError
from chalicelib.core.models import (ENFORCEMENT_KEY, EnforcementNotice, EnforcementState, enforcement_notice_key,
                                    is_condition_failure, read_item)


class EnforcementBook:
    # -- the reconcile's state -------------------------------------------------------------
    def state(self) -> EnforcementState:
        return read_item(EnforcementState, ENFORCEMENT_KEY, "the enforcement state",
                         missing=EnforcementState(*ENFORCEMENT_KEY))

    def record(self, at: float, blocked: List[dict], missing: List[dict], error: Optional[str],
               unsent: Optional[List[dict]], previous: EnforcementState) -> None:
        """Replace the state with one reconcile's outcome (absolute, like every write here);
        ``previous``: the state the reconcile began from."""
        item = EnforcementState(*ENFORCEMENT_KEY, last_reconcile_at=at, blocked=blocked, missing=missing or None,
                                unsent=unsent or None)
        if error:
            item.last_error, item.last_error_at = error[:1000], at
            item.last_success_at = previous.last_success_at
        else:
            item.last_success_at = at
        try:
            item.save()
        except PynamoDBException as e:
            raise StoreError(f"recording the enforcement state failed: {e}") from e

    # -- owner notices ----------------------------------------------------------------------
    def claim_notice(self, service: str, period_start: int, event: str, now: float) -> Optional[EnforcementNotice]:
        """Claim the (service, period, event) notice; None when it was claimed before."""
        notice = EnforcementNotice(*enforcement_notice_key(service, period_start, event), service=service,
                                   period_start=period_start, event=event, claimed_at=now, status="pending")
        try:
            notice.save(condition=EnforcementNotice.pk.does_not_exist())
        except PutError as e:
            if is_condition_failure(e):
                return None
            raise StoreError(f"claiming the {event} notice of {service!r} failed: {e}") from e
        return notice

    def mark_sent(self, notice: EnforcementNotice, at: float, status: str = "sent") -> None:
        try:
            notice.update(actions=[EnforcementNotice.status.set(status), EnforcementNotice.sent_at.set(at)])
        except UpdateError as e:
            raise StoreError(f"marking the {notice.event} notice of {notice.service!r} sent failed: {e}") from e

    def release(self, notice: EnforcementNotice) -> None:
        """Give a claim back after a failed delivery, so the next reconcile sends it."""
        try:
            notice.delete()
        except DeleteError as e:
            raise StoreError(f"releasing the {notice.event} notice of {notice.service!r} failed: {e}") from e

    def notices(self, service: str) -> List[dict]:
        try:
            items = EnforcementNotice.query(enforcement_notice_key(service, 0, "")[0])
            return [{"period_start": int(n.period_start), "event": n.event, "status": n.status} for n in items]
        except PynamoDBException as e:
            raise StoreError(f"reading the enforcement notices of {service!r} failed: {e}") from e
