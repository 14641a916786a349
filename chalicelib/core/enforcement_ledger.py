"""The enforcement ledger: what the last reconcile left at the gateway (and the block notices it
has not seen settled), and the owner notices themselves, each claimed with a conditional write
so it goes out once."""
from __future__ import annotations

from typing import List, Optional

from pynamodb.exceptions import DeleteError, PutError, PynamoDBException, UpdateError

from chalicelib.core.errors import StoreError
from chalicelib.core.models import (ENFORCEMENT_KEY, SERVICE, EnforcementNotice, EnforcementState,
                                    enforcement_notice_key, is_condition_failure, read_item)

# A claim older than this was made by an alerts invocation that died (its timeout is 60 s).
CLAIM_TIMEOUT_SECONDS = 90
NOTICE_RETRY_SECONDS = 86400  # how long a block started / ended notice is offered again, then given up
SETTLED = ("sent", "no_recipients", "gave_up")


class EnforcementLedger:
    # -- the reconcile's state -------------------------------------------------------------
    def state(self) -> EnforcementState:
        return read_item(EnforcementState, ENFORCEMENT_KEY, "the enforcement state",
                         missing=EnforcementState(*ENFORCEMENT_KEY))

    def record(self, at: float, blocked: List[dict], missing: List[dict], error: Optional[str],
               notices: Optional[List[dict]], previous: EnforcementState) -> None:
        """Replace the state with one reconcile's outcome (absolute, like every write here);
        ``previous``: the state the reconcile began from."""
        item = EnforcementState(*ENFORCEMENT_KEY, last_reconcile_at=at, blocked=blocked, missing=missing or None,
                                notices=notices or None)
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
    def claim_notice(self, service: str, period_start: int, event: str, now: float,
                     status: str = "pending", kind: str = SERVICE) -> Optional[EnforcementNotice]:
        """Claim the (service, period, event) notice (a consumer's: ``kind``, under a key of its
        own); None when it is claimed already (settled, or pending with a live sender). A pending
        claim older than CLAIM_TIMEOUT_SECONDS is taken over: its sender died before it could send
        or give the claim back."""
        notice = EnforcementNotice(*enforcement_notice_key(service, period_start, event, kind), service=service,
                                   period_start=period_start, event=event, claimed_at=now, status=status)
        stale = (EnforcementNotice.status == "pending") & (EnforcementNotice.claimed_at < now - CLAIM_TIMEOUT_SECONDS)
        try:
            notice.save(condition=EnforcementNotice.pk.does_not_exist() | stale)
        except PutError as e:
            if is_condition_failure(e):
                return None
            raise StoreError(f"claiming the {event} notice of {service!r} failed: {e}") from e
        return notice

    def notice_settled(self, service: str, period_start: int, event: str, kind: str = SERVICE) -> bool:
        """Whether the (service, period, event) notice went out (or had nobody to go to, or was
        given up); a pending claim is not settled."""
        notice = read_item(EnforcementNotice, enforcement_notice_key(service, period_start, event, kind),
                           f"the {event} notice of {service!r}")
        return notice is not None and notice.status in SETTLED

    def mark_sent(self, notice: EnforcementNotice, at: float, status: str = "sent") -> None:
        try:
            notice.update(actions=[EnforcementNotice.status.set(status), EnforcementNotice.sent_at.set(at)])
        except UpdateError as e:
            raise StoreError(f"marking the {notice.event} notice of {notice.service!r} sent failed: {e}") from e

    def release(self, notice: EnforcementNotice) -> None:
        """Give a claim back after a failed delivery, so a retry sends it."""
        try:
            notice.delete()
        except DeleteError as e:
            raise StoreError(f"releasing the {notice.event} notice of {notice.service!r} failed: {e}") from e
