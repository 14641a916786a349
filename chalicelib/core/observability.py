"""Logs and metrics: what a deployed Bandwidth Meter tells about itself.

**Logs.** In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set) every ``chalicelib.*`` logger writes
one JSON object per line at INFO through Powertools' Logger, with the invocation's request id
and cold start. The Lambda runtime's own root logger stays at WARNING, which is why our INFO
lines were dropped before. Locally the host (``make run``, pytest, ``chalice local``) keeps its
readable text; every structured line also has a readable message, and its fields go in
``extra`` so they become JSON keys in Lambda.

**Metrics.** CloudWatch embedded metric format (EMF): Powertools' Metrics serialises them into
one JSON line on stdout that CloudWatch Logs turns into metrics in ``NAMESPACE`` with the
dimension ``service`` (``POWERTOOLS_SERVICE_NAME``: the stack's or chalice stage's name, so
two stages in one account do not mix; the alarms use the same value). They are collected per
invocation and flushed once at its end by ``invocation`` (the app's middleware). Locally
nothing is printed as EMF: the flushed values are kept per thread for the local runtime's
banner (``last_flushed``, ``readable``).

The metric names below are the contract with the alarms in ``deploy/parity.py``.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Dict, List, Mapping, Optional, Tuple

NAMESPACE = "BandwidthMeter"
DEFAULT_SERVICE = "bandwidth-meter"

# The collector, once per run.
COLLECTOR_LAG = "CollectorLagSeconds"  # now minus the watermark after the run
RUN_DURATION = "CollectorRunDuration"
SERIES_SEEN = "SeriesSeen"
SERIES_QUARANTINED = "SeriesQuarantined"
ITEMS_WRITTEN = "ItemsWritten"
PROMETHEUS_REQUESTS = "PrometheusRequests"
# The alerts function, once per alert.
ALERTS_SENT = "AlertsSent"
ALERTS_FAILED = "AlertsFailed"
ALERTS_DUPLICATED = "AlertsDuplicated"  # redelivered after a timed-out claim: its first sender may have sent
ALERTS_COVERED = "AlertsCovered"
# The API, once per refused request.
THROTTLED_REQUESTS = "ThrottledRequests"
REFUSED_REQUESTS = "RefusedRequests"

UNITS = {
    COLLECTOR_LAG: "Seconds", RUN_DURATION: "Milliseconds", SERIES_SEEN: "Count", SERIES_QUARANTINED: "Count",
    ITEMS_WRITTEN: "Count", PROMETHEUS_REQUESTS: "Count", ALERTS_SENT: "Count", ALERTS_FAILED: "Count",
    ALERTS_DUPLICATED: "Count", ALERTS_COVERED: "Count", THROTTLED_REQUESTS: "Count", REFUSED_REQUESTS: "Count",
}

log = logging.getLogger(__name__)
_local = threading.local()  # pending metrics and the last flush, per thread (the local runtime has several)
_lock = threading.Lock()
_state: Dict[str, Any] = {"logger": None, "metrics": None, "cold": True}


def in_lambda(env: Mapping[str, str] = os.environ) -> bool:
    # Logging is set up before (and without) the settings; the decision is still theirs.
    from chalicelib.core.settings import running_in_lambda

    return running_in_lambda(env)


def service_name(env: Mapping[str, str] = os.environ) -> str:
    return env.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE


# -- logs ---------------------------------------------------------------------------------------
def setup_logging(env: Mapping[str, str] = os.environ) -> None:
    """In Lambda, route the ``chalicelib`` loggers to Powertools' JSON handler at INFO (or
    ``LOG_LEVEL``). Elsewhere leave logging to the host. Idempotent; cheap after the first call."""
    if not in_lambda(env) or _state["logger"] is not None:
        return
    with _lock:
        if _state["logger"] is not None:
            return
        from aws_lambda_powertools import Logger

        logger = Logger(service=service_name(env), level=env.get("LOG_LEVEL") or "INFO")
        package = logging.getLogger("chalicelib")
        package.handlers = [logger.registered_handler]
        package.setLevel(logger.log_level)
        package.propagate = False  # the runtime's root handler would print each line a second time
        _state["logger"] = logger


def reset() -> None:
    """Forget the configured logger and metrics (tests change the environment between cases)."""
    with _lock:
        if _state["logger"] is not None:
            package = logging.getLogger("chalicelib")
            package.handlers, package.propagate = [], True
            package.setLevel(logging.NOTSET)
            # Powertools keeps its logging.Logger (and its handler's stream) for the process;
            # forget it too, so the next Logger writes to the sys.stdout of that moment.
            own = logging.getLogger(_state["logger"].service)
            own.handlers = []
            for attribute in ("init", "powertools_handler"):
                own.__dict__.pop(attribute, None)
        _state.update(logger=None, metrics=None, cold=True)
    _local.__dict__.clear()


def _context_keys(context) -> dict:
    """Powertools' Lambda context keys, read leniently (local runs pass a smaller context)."""
    keys = {"function_name": getattr(context, "function_name", None),
            "function_memory_size": getattr(context, "memory_limit_in_mb", None),
            "function_arn": getattr(context, "invoked_function_arn", None),
            "function_request_id": getattr(context, "aws_request_id", None)}
    return {k: v for k, v in keys.items() if v is not None}


# -- metrics ------------------------------------------------------------------------------------
def metric(name: str, value: float) -> None:
    """Count or measure something in this invocation; flushed at its end."""
    _pending().append((name, float(value)))


def _pending() -> List[Tuple[str, float]]:
    if not hasattr(_local, "pending"):
        _local.pending = []
    return _local.pending


def _emf_metrics():
    if _state["metrics"] is None:
        from aws_lambda_powertools import Metrics

        _state["metrics"] = Metrics(namespace=NAMESPACE, service=service_name())
    return _state["metrics"]


def flush() -> Dict[str, List[float]]:
    """Publish this invocation's metrics: one EMF line on stdout in Lambda; locally kept for
    ``last_flushed``. Returns what was flushed (name -> values)."""
    pending, _local.pending = _pending(), []
    values: Dict[str, List[float]] = {}
    for name, value in pending:
        values.setdefault(name, []).append(value)
    if values and in_lambda():
        emf = _emf_metrics()
        for name, value in pending:
            emf.add_metric(name=name, unit=UNITS.get(name, "Count"), value=value)
        emf.flush_metrics()
    if values:
        _local.last = values
    return values


def last_flushed(clear: bool = False) -> Dict[str, List[float]]:
    """The metrics this thread flushed last (the local runtime prints them); ``clear`` forgets them."""
    values = getattr(_local, "last", {})
    if clear:
        _local.last = {}
    return values


@contextmanager
def invocation(context=None):
    """Around one Lambda invocation: the context's keys on every log line, metrics flushed once."""
    setup_logging()
    logger = _state["logger"]
    if logger is not None:
        logger.append_keys(cold_start=_state["cold"], **_context_keys(context))
        _state["cold"] = False
    try:
        yield
    finally:
        flush()


def middleware(event, get_response):
    """Chalice middleware for every handler (``app.register_middleware(..., "all")``)."""
    from chalice.app import Request

    context = event.lambda_context if isinstance(event, Request) else getattr(event, "context", None)
    with invocation(context):
        return get_response(event)


# -- the events worth a line and a metric -----------------------------------------------------------
def collector_run(report: dict, now: float, watermark: Optional[float], duration_seconds: float,
                  logger: logging.Logger = log) -> None:
    """One line and the run's metrics per collector run (``report`` is RunReport.as_dict())."""
    quarantined = _count(report.get("series_quarantined", report.get("quarantined")))
    lag = max(0, int(now - watermark)) if watermark is not None else None
    if report.get("status") != "skipped":
        if lag is not None:
            metric(COLLECTOR_LAG, lag)
        metric(RUN_DURATION, round(duration_seconds * 1000))
        metric(SERIES_SEEN, report.get("series_seen") or 0)
        metric(SERIES_QUARANTINED, quarantined)
        metric(ITEMS_WRITTEN, report.get("items_written") or 0)
        metric(PROMETHEUS_REQUESTS, report.get("prometheus_requests") or 0)
    level = logging.ERROR if report.get("status") == "failed" else logging.INFO
    logger.log(level, "collector run %s: %s minutes up to %s, lag %s s, %s series (%s quarantined), "
                   "%s items written, %s Prometheus requests, %.1f s%s",
            report.get("status"), report.get("minutes", 0), report.get("end"), lag, report.get("series_seen", 0),
            quarantined, report.get("items_written", 0), report.get("prometheus_requests", 0), duration_seconds,
            f": {report['error']}" if report.get("error") else "",
            extra={"event": "collector_run", "report": report, "lag_seconds": lag,
                   "duration_ms": round(duration_seconds * 1000)})


def _count(value) -> int:
    """A report field that is either a count or the list of what it counts (None: 0)."""
    if value is None:
        return 0
    return value if isinstance(value, int) else len(value)


_ALERT_METRICS = {"sent": ALERTS_SENT, "failed": ALERTS_FAILED, "duplicated": ALERTS_DUPLICATED,
                  "covered": ALERTS_COVERED}


def alert_event(outcome: str, alert, threshold: Optional[float] = None, logger: logging.Logger = log,
                **fields) -> None:
    """One line and one count per alert sent, covered, failed or duplicated. Recipients are
    counted, never named (they are personal data)."""
    metric(_ALERT_METRICS[outcome], 1)
    threshold = alert.threshold if threshold is None else threshold
    kind = "forecast" if getattr(alert, "forecast_eta", None) is not None else f"{threshold:g}%"
    level = logging.WARNING if outcome == "failed" else logging.INFO
    detail = "".join(f", {k} {v}" for k, v in fields.items())
    logger.log(level, "alert %s: %s %s of its %s quota%s", outcome, alert.service, kind, alert.period_kind, detail,
            extra={"event": "alert", "outcome": outcome, "metered_service": alert.service, "threshold": threshold,
                   "forecast": kind == "forecast", "period_start": alert.period_start,
                   "usage_bytes": alert.usage_bytes, "limit_bytes": alert.limit_bytes, **fields})


def request_refused(method: str, route: str, status: int, code: str, key_name: str,
                    retry_after: Optional[int] = None, logger: logging.Logger = log,
                    reason: Optional[str] = None) -> None:
    """One line per refused request, naming the key (``key#1a2b3c4d``), never the key itself;
    ``reason`` is what the caller was told (why a deployed stage without keys refuses, say)."""
    metric(THROTTLED_REQUESTS if status == 429 else REFUSED_REQUESTS, 1)
    fields = {"event": "request_refused", "method": method, "route": route, "status": status,
              "code": code, "key": key_name, "retry_after": retry_after, "reason": reason}
    if status == 429:
        logger.info("access: %s %s throttled for %s (retry in %s s)", method, route, key_name, retry_after,
                    extra=fields)
    else:
        logger.warning("access: %s %s refused %s %s for %s%s", method, route, status, code, key_name,
                       f": {reason}" if reason else "", extra=fields)


# -- readable (make run) ---------------------------------------------------------------------------
_READABLE = [
    (COLLECTOR_LAG, "lag {:g} s"), (RUN_DURATION, "run {:g} ms"), (SERIES_SEEN, "{:g} series"),
    (SERIES_QUARANTINED, "{:g} quarantined"), (ITEMS_WRITTEN, "{:g} items written"),
    (PROMETHEUS_REQUESTS, "{:g} Prometheus requests"), (ALERTS_SENT, "{:g} alerts sent"),
    (ALERTS_COVERED, "{:g} covered"), (ALERTS_FAILED, "{:g} failed"), (ALERTS_DUPLICATED, "{:g} duplicated"),
    (THROTTLED_REQUESTS, "{:g} throttled"), (REFUSED_REQUESTS, "{:g} refused"),
]


# One of these, said in the singular ("1 alert sent", not "1 alerts sent").
_SINGULAR = {ITEMS_WRITTEN: "{:g} item written", PROMETHEUS_REQUESTS: "{:g} Prometheus request",
             ALERTS_SENT: "{:g} alert sent"}


def readable(values: Mapping[str, List[float]]) -> str:
    """The metrics as a person reads them: ``lag 75 s, run 420 ms, 12 series, ...``."""
    parts = []
    for name, text in _READABLE:
        if name in values:
            counts = values[name]
            total = max(counts) if UNITS[name] != "Count" else sum(counts)
            parts.append((_SINGULAR.get(name, text) if total == 1 else text).format(total))
    return ", ".join(parts)

