"""The collector's status as the API shows it."""
from __future__ import annotations

from chalicelib.core import observability
from chalicelib.core.redact import redact
from chalicelib.core.store import LEASE_SECONDS
from chalicelib.core.timeutil import iso


def _t(value):
    return iso(value) if value is not None else None


def enforcement_status(state, settings) -> dict:
    """The reconcile's last outcome (chalicelib/enforce/reconcile.py), from its state item."""
    return {
        "enabled": bool(settings.kong_admin_url),
        "last_reconcile": _t(state.last_reconcile_at),
        "last_success": _t(state.last_success_at),
        "blocked_count": len(state.blocked or []),
        "blocked": sorted(entry["service"] for entry in (state.blocked or [])),
        "missing_services": [m["service"] for m in (state.missing or [])],
        "last_error": redact(state.last_error) if state.last_error and state.last_error_at == state.last_reconcile_at
        else None,
        "last_error_at": _t(state.last_error_at),
    }


def collector_status(state, settings, now: float, enforcement=None) -> dict:
    watermark = int(state.watermark) if state.watermark is not None else None
    running = state.running_since is not None and state.running_since > now - LEASE_SECONDS
    lag = int(now - watermark) if watermark is not None else None
    # The last run's figures under the names its CloudWatch metrics have in AWS, and in words.
    metrics = {name: int(value) for name, value in (
        (observability.COLLECTOR_LAG, lag), (observability.RUN_DURATION, state.last_duration_ms),
        (observability.SERIES_SEEN, state.last_series_seen), (observability.SERIES_QUARANTINED, state.quarantined_count),
        (observability.ITEMS_WRITTEN, state.last_items_written),
    ) if value is not None}
    return {
        "metrics": metrics,
        "summary": observability.readable({name: [value] for name, value in metrics.items()}),
        "watermark": _t(watermark),
        "lag_seconds": lag,
        "configured_lag_seconds": settings.collect_lag_seconds,
        "collection_start": _t(state.collection_start),
        "gaps": [{"start": iso(a), "end": iso(b)} for a, b in (state.gaps or [])],
        "running": running,
        "running_since": _t(state.running_since) if running else None,
        "last_run_start": _t(state.last_run_start),
        "last_run_end": _t(state.last_run_end),
        "last_duration_ms": int(state.last_duration_ms) if state.last_duration_ms is not None else None,
        "series_seen": int(state.last_series_seen) if state.last_series_seen is not None else None,
        "minutes_written": int(state.last_minutes_written) if state.last_minutes_written is not None else None,
        "items_written": int(state.last_items_written) if state.last_items_written is not None else None,
        "kong_schemas_seen": state.schema_seen.split(",") if state.schema_seen else [],
        "last_success": _t(state.last_success_at),
        "last_error": redact(state.last_error),  # an error may quote a URL with credentials
        "last_error_at": _t(state.last_error_at),
        "quarantined_count": int(state.quarantined_count or 0),
        "quarantined": list(state.quarantined or []),
        **({"enforcement": enforcement_status(enforcement, settings)} if enforcement is not None else {}),
    }
