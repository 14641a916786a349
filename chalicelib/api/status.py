"""The collector's status as the API shows it."""
from __future__ import annotations

from chalicelib.core import observability
from chalicelib.core.enforcement import entry_key
from chalicelib.core.models import CONSUMER, SERVICE
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
        "blocked": sorted(entry["service"] for entry in (state.blocked or []) if entry_key(entry)[0] == SERVICE),
        "blocked_consumers": sorted(entry["consumer"] for entry in (state.blocked or [])
                                    if entry_key(entry)[0] == CONSUMER),
        "missing_services": [m["service"] for m in (state.missing or []) if entry_key(m)[0] == SERVICE],
        "missing_consumers": [m["consumer"] for m in (state.missing or []) if entry_key(m)[0] == CONSUMER],
        "last_error": redact(state.last_error) if state.last_error and state.last_error_at == state.last_reconcile_at
        else None,
        "last_error_at": _t(state.last_error_at),
    }


def series_selector_status(settings) -> dict:
    """Which series count (PROMETHEUS_SERIES_SELECTOR), and a warning where none is set in AWS:
    then every target of a shared Prometheus can publish bandwidth series that count."""
    matchers = getattr(settings, "prometheus_series_selector", None)
    warning = None
    if not matchers and getattr(settings, "in_lambda", False):
        warning = ("PROMETHEUS_SERIES_SELECTOR is not set: every series named like Kong's counts, whichever "
                   "target published it; set it to your gateways' scrape job, e.g. {job=\"kong\"}")
    return {"in_force": f"{{{matchers}}}" if matchers else None, "warning": warning}


def collector_status(state, settings, now: float, shard_states=None, enforcement=None) -> dict:
    """Shard 0's state at the top level (what unsharded clients read); with shards, the watermark
    and lag are the slowest shard's, counts add up, and ``shards`` lists every shard. With
    ``enforcement`` (its state item), what the last reconcile left at the gateway."""
    report = shard_status(state, settings, now)
    report["series_selector"] = series_selector_status(settings)
    if enforcement is not None:
        report["enforcement"] = enforcement_status(enforcement, settings)
    if not shard_states or len(shard_states) < 2:
        return report
    each = [dict(shard_status(one, settings, now), shard=n) for n, one in enumerate(shard_states)]
    watermarks = [one["watermark"] for one in each]
    if all(watermarks):
        slowest = min(each, key=lambda one: one["watermark"])
        report.update(watermark=slowest["watermark"], lag_seconds=slowest["lag_seconds"])
    else:
        report.update(watermark=None, lag_seconds=None)
    for name in ("series_seen", "minutes_written", "items_written", "quarantined_count", "services_waiting"):
        report[name] = sum(one[name] or 0 for one in each)
    report["running"] = any(one["running"] for one in each)
    report["quarantined"] = [entry for one in each for entry in one["quarantined"]]
    errors = [one for one in each if one["last_error"]]
    if errors:
        report.update(last_error=f"shard {errors[0]['shard']}: {errors[0]['last_error']}",
                      last_error_at=errors[0]["last_error_at"])
    report["shards"] = each
    return report


def shard_status(state, settings, now: float) -> dict:
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
        "services_waiting": int(state.services_waiting or 0),
    }
