"""``GET /v1/enforcement``: what is blocked and why, what the gateway has applied, and the same as
a decK file.

The blocks due are computed here from the stored usage and quotas (chalicelib/core/enforcement.py),
so the listing serves gateways the product cannot write to (DB-less Kong, Konnect) as well as
those it reconciles through the Admin API; ``gateway`` says what the last reconcile left there.

Desired and applied state differ for up to a collector run: a block due now is applied at the
next reconcile, and a block no longer due (quota raised, action warn, quota removed) is lifted at
the next reconcile, the gateway answering 429 until then. Each entry says which (``state``), so
the listing never reads "nothing blocked" while the gateway still refuses requests.
"""
from __future__ import annotations

from chalicelib.api.status import enforcement_status
from chalicelib.core.consumer_usage import ConsumerUsageReader
from chalicelib.core.enforcement import all_due_blocks, blocked_listing, entry_key
from chalicelib.core.models import CONSUMER
from chalicelib.enforce.kong_plugin import deck_snippet

APPLIED = "blocked"  # due, and the gateway refuses requests
BLOCK_PENDING = "block pending"  # due, the next reconcile applies it
LIFT_PENDING = "lift pending"  # not due any more, the gateway refuses requests until the next reconcile
BLOCK_MISSING = "missing at gateway"  # due, but the gateway has no service of that name
DECLARATIVE = "apply with decK"  # no Admin API: the deck file below is what to apply


def listing(store, snapshot, state, settings, now: float, consumers=None) -> dict:
    """Services' and consumers' blocks alike; each entry says its ``kind`` (a consumer's names it
    under ``consumer``: it is refused on every service)."""
    due = all_due_blocks(store, consumers or ConsumerUsageReader(store, settings.shard_count), snapshot, now)
    admin_api = bool(settings.kong_admin_url)
    applied = {entry_key(entry): entry for entry in (state.blocked or [])}
    missing = {entry_key(m) for m in (state.missing or [])}

    def desired_state(key) -> str:
        if not admin_api:
            return DECLARATIVE
        if key in applied:
            return APPLIED
        return BLOCK_MISSING if key in missing else BLOCK_PENDING

    blocked = [{**entry, "at_gateway": entry_key(entry) in applied,
                "plugin_id": applied.get(entry_key(entry), {}).get("plugin_id"),
                "state": desired_state(entry_key(entry))}
               for entry in blocked_listing(due)]
    lifting = [{("consumer" if kind == CONSUMER else "service"): name, "kind": kind,
                "plugin_id": entry.get("plugin_id"), "period_end": entry.get("period_end"),
                "at_gateway": True, "state": LIFT_PENDING}
               for (kind, name), entry in sorted(applied.items()) if (kind, name) not in due] if admin_api else []
    return {
        "mode": "admin-api" if admin_api else "declarative",
        "blocked": blocked,
        "lift_pending": lifting,
        "gateway": enforcement_status(state, settings),
        "deck": deck_snippet(due.values()),
    }
