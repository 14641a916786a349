"""``GET /v1/enforcement``: what is blocked now and why, and the same as a decK file.

The blocks due are computed here from the stored usage and quotas (chalicelib/core/enforcement.py),
so the listing serves gateways the product cannot write to (DB-less Kong, Konnect) as well as
those it reconciles through the Admin API; ``gateway`` says what the last reconcile left there.
"""
from __future__ import annotations

from chalicelib.api.status import enforcement_status
from chalicelib.core.enforcement import block_candidates, blocked_listing, due_blocks
from chalicelib.enforce.kong_plugin import deck_snippet


def listing(store, snapshot, state, settings, now: float) -> dict:
    due = due_blocks(store, block_candidates(store, snapshot), snapshot, now)
    applied = {entry["service"]: entry.get("plugin_id") for entry in (state.blocked or [])}
    blocked = [{**entry, "at_gateway": entry["service"] in applied, "plugin_id": applied.get(entry["service"])}
               for entry in blocked_listing(due)]
    return {
        "mode": "admin-api" if settings.kong_admin_url else "declarative",
        "blocked": blocked,
        "gateway": enforcement_status(state, settings),
        "deck": deck_snippet(due.values()),
    }
