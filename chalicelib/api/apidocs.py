"""The API's OpenAPI 3.1 description (served at /openapi.json) and a readable page (/docs).

The spec is built here, next to the code, so one module says what every route takes and
returns; tests/e2e/test_schemathesis.py checks the running API against it.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Sequence, Tuple

from chalicelib import __version__
from chalicelib.api.charts import MAX_POINTS, STEPS
from chalicelib.api.legacy import DURATION_PATTERN
from chalicelib.core.errors import NotFound
from chalicelib.core.events import EVENT_SCHEMA, MAX_BATCH_EVENTS
from chalicelib.core.quotas import QUOTA_SCHEMA, RULES_SCHEMA

TIME = {"type": "string", "format": "date-time", "examples": ["2026-11-24T10:00:00Z"]}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, required=None, additional=False) -> dict:  # noqa: D401
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required),
            "additionalProperties": additional}


SCHEMAS = {
    "Error": _obj({"error": _obj({
        "code": {"type": "string", "examples": ["bad_request"]},
        "message": {"type": "string"},
        "parameter": {"type": "string", "description": "The offending parameter or field(s)"},
        "details": {"type": "array", "items": _obj({"field": {"type": "string"}, "message": {"type": "string"}})},
        "current_version": {"type": ["string", "null"],
                            "description": "412 only: the current version's ETag (null: nothing is stored)"},
    }, required=["code", "message"])}),
    "Usage": _obj({"ingress": {"type": "integer"}, "egress": {"type": "integer"}, "total": {"type": "integer"}}),
    "Health": _obj({"status": {"const": "ok"}, "version": {"type": "string"},
                    "backends": {"type": "object"}}),
    "CollectorStatus": {"type": "object", "required": ["watermark", "running", "last_error"], "properties": {
        "watermark": {"type": ["string", "null"]}, "lag_seconds": NULLABLE_INT,
        "configured_lag_seconds": {"type": "integer"}, "collection_start": {"type": ["string", "null"]},
        "gaps": {"type": "array", "items": _obj({"start": TIME, "end": TIME})},
        "running": {"type": "boolean"}, "running_since": {"type": ["string", "null"]},
        "last_run_start": {"type": ["string", "null"]}, "last_run_end": {"type": ["string", "null"]},
        "last_duration_ms": NULLABLE_INT, "series_seen": NULLABLE_INT, "minutes_written": NULLABLE_INT,
        "items_written": NULLABLE_INT, "kong_schemas_seen": {"type": "array", "items": {"type": "string"}},
        "last_success": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]},
        "last_error_at": {"type": ["string", "null"]},
        "quarantined_count": {"type": "integer", "description": "Series the last run skipped as bad data"},
        "quarantined": {"type": "array", "description": "Up to 50 of them, with the reason",
                        "items": _obj({"series": {"type": "string"}, "reason": {"type": "string"}})},
        "services_waiting": {"type": "integer", "description": "New services the catch-all shard has "
                             "yet to count and hand over (a first deployment: at most 1,000 a run)"},
        "metrics": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": "the last run's figures under their CloudWatch metric names"},
        "summary": {"type": "string", "description": "the same figures in words"},
        "series_selector": _obj({
            "in_force": {"type": ["string", "null"], "examples": ['{job="kong"}'],
                         "description": "PROMETHEUS_SERIES_SELECTOR: the label matchers every collector query "
                                        "carries; null: every series with Kong's metric names counts"},
            "warning": {"type": ["string", "null"],
                        "description": "Set in AWS when no selector is configured"}}, required=["in_force", "warning"]),
        "enforcement": ref("GatewayEnforcement")}},
    "GatewayEnforcement": _obj({
        "enabled": {"type": "boolean", "description": "KONG_ADMIN_URL is set: the collector reconciles Kong"},
        "last_reconcile": {"type": ["string", "null"]}, "last_success": {"type": ["string", "null"]},
        "blocked_count": {"type": "integer", "description": "Blocks at the gateway, services' and consumers'"},
        "blocked": {"type": "array", "items": {"type": "string"}, "description": "Services blocked there"},
        "blocked_consumers": {"type": "array", "items": {"type": "string"},
                              "description": "Consumers blocked there (on every service)"},
        "missing_services": {"type": "array", "items": {"type": "string"},
                             "description": "Due a block, but Kong has no service of that name"},
        "missing_consumers": {"type": "array", "items": {"type": "string"},
                              "description": "Due a block, but Kong has no consumer of that username"},
        "last_error": {"type": ["string", "null"], "description": "The last reconcile's problems, if any"},
        "last_error_at": {"type": ["string", "null"]}}),
    "Enforcement": _obj({
        "mode": {"enum": ["admin-api", "declarative"],
                 "description": "admin-api: the collector applies the blocks through Kong's Admin API; "
                                "declarative: apply `deck` yourself (DB-less Kong, Konnect)"},
        "blocked": {"type": "array", "items": {"type": "object", "required": [
            "kind", "usage_bytes", "limit_bytes", "reject_at", "period_start", "period_end", "at_gateway"],
            "properties": {
                "kind": {"enum": ["service", "consumer"],
                         "description": "service: the service is refused (its `service`); consumer: the consumer "
                                        "(its `consumer` key) is refused on every service, by a request-termination "
                                        "plugin scoped to it"},
                "service": {"type": "string"}, "consumer": {"type": "string"}, "usage_bytes": {"type": "integer"},
                "limit_bytes": {"type": "integer"}, "reject_at": {"type": "number"},
                "percent": {"type": "number"}, "direction": {"enum": ["total", "ingress", "egress"]},
                "period_kind": {"enum": ["daily", "weekly", "monthly"]}, "period_start": TIME, "period_end": TIME,
                "source": {"type": "string"}, "at_gateway": {"type": "boolean"},
                "plugin_id": {"type": ["string", "null"]},
                "state": {"enum": ["blocked", "block pending", "missing at gateway", "apply with decK"],
                          "description": "blocked: applied at the gateway; block pending: due, the collector's "
                                         "next run applies it; missing at gateway: Kong has no service (or "
                                         "consumer) of that name; apply with decK: declarative mode"}}}},
        "lift_pending": {"type": "array", "description": "Blocks no longer due that the gateway still applies "
                         "(it answers 429) until the collector's next run lifts them", "items": _obj({
                             "kind": {"enum": ["service", "consumer"]},
                             "service": {"type": "string"}, "consumer": {"type": "string"},
                             "plugin_id": {"type": ["string", "null"]},
                             "period_end": {"type": ["string", "null"]}, "at_gateway": {"const": True},
                             "state": {"const": "lift pending"}},
                             required=["kind", "plugin_id", "period_end", "at_gateway", "state"])},
        "gateway": ref("GatewayEnforcement"),
        "deck": {"type": "object", "description": "A decK state file (JSON is YAML) with exactly the "
                                                  "request-termination plugins due, tagged bandwidth-meter"}}),
    "EffectiveQuota": {"type": ["object", "null"], "properties": {
        "source": {"type": "string", "description": "service, rule:<pattern>"},
        "limit_bytes": {"type": "integer"}, "period": {"enum": ["day", "week", "month"]},
        "anchor_day": {"type": "integer"}, "direction": {"enum": ["total", "ingress", "egress"]},
        "thresholds": {"type": "array", "items": {"type": "number"}},
        "notify": {"type": "array", "items": {"type": "string"}}, "forecast": {"type": "boolean"},
        "webhook": {"type": "boolean", "description": "whether alerts are also POSTed to a webhook "
                                                      "(its URL: GET /v1/services/{service}/quota, admin keys)"},
        "action": {"enum": ["warn", "reject"]},
        "reject_at": {"type": "number", "description": "With action reject: percent of the limit that blocks"}}},
    "ServiceSummary": _obj({
        "service": {"type": "string"},
        "usage": {**ref("Usage"), "description": "Bytes in the current period, scraped and pushed (what the quota "
                                                 "judges)"},
        "pushed": {**ref("Usage"), "description": "The part of usage that was pushed (POST /v1/events, committed "
                                                  "imports) in the same period; usage minus pushed was scraped"},
        "period": _obj({"kind": {"enum": ["day", "week", "month"]}, "start": TIME, "end": TIME}),
        "quota": ref("EffectiveQuota"), "percent": NULLABLE_NUMBER, "first_seen": TIME, "last_active": TIME}),
    "ServicesPage": _obj({"services": {"type": "array", "items": ref("ServiceSummary")},
                          "total_count": {"type": "integer"}, "next_cursor": {"type": ["string", "null"]}}),
    "Point": _obj({"time": TIME, "bytes": {**NULLABLE_INT, "description":
                                           "bytes in [time, time + step); 0: no traffic; null: not collected"},
                   "partial": {"type": "boolean", "description": "only part of [time, time + step) is collected "
                               "(collection began in it, it is still filling, or a gap cuts it): bytes are "
                               "what was collected so far"}}),
    "Series": _obj({"direction": {"enum": ["ingress", "egress", "total"]}, "route": {"type": ["string", "null"]},
                    "consumer": {"type": ["string", "null"], "description":
                                 "the consumer of a chart by consumer (\"(anonymous)\": traffic without one; "
                                 "\"(other consumers)\": those beyond the 300 a bucket keeps); null otherwise"},
                    "points": {"type": "array", "items": ref("Point")}, "total_bytes": {"type": "integer"},
                    "source": {"enum": ["scraped", "pushed"], "description": "split=source only"}},
                   required=["direction", "route", "consumer", "points", "total_bytes"]),
    "Chart": _obj({"service": {"type": "string"}, "start": TIME, "end": TIME, "step": {"enum": list(STEPS)},
                   "split": {"enum": ["route", "consumer", "source", None]}, "consumer": {"type": ["string", "null"]},
                   "series": {"type": "array", "items": ref("Series")}}),
    "ConsumerSummary": _obj({
        "consumer": {"type": "string", "description": "The key: <workspace>:<name> outside the default workspace"},
        "workspace": {"type": "string"}, "name": {"type": "string"}, "usage": ref("Usage"),
        "period": _obj({"kind": {"enum": ["day", "week", "month"]}, "start": TIME, "end": TIME}),
        "quota": ref("EffectiveQuota"), "percent": NULLABLE_NUMBER,
        "services": {"type": "object", "additionalProperties": ref("Usage"),
                     "description": "Bytes per service in the period (services without bytes in it left out)"},
        "first_seen": TIME, "last_active": TIME}),
    "ConsumersPage": _obj({"consumers": {"type": "array", "items": ref("ConsumerSummary")},
                           "total_count": {**NULLABLE_INT, "description": "Consumers in the last ranking (null: none yet)"},
                           "next_cursor": {"type": ["string", "null"]},
                           "sort": {"enum": ["usage", "name", "percent"]}, "order": {"enum": ["asc", "desc"]},
                           "ranked_at": {"type": ["string", "null"], "description":
                                         "When the order (usage, percent) was ranked; null for name"}}),
    "ConsumerSeries": _obj({"direction": {"enum": ["ingress", "egress", "total"]},
                            "service": {"type": ["string", "null"], "description": "split=service or service=: "
                                        "the service; null: all the consumer's services"},
                            "consumer": {"type": "string"}, "points": {"type": "array", "items": ref("Point")},
                            "total_bytes": {"type": "integer"}}),
    "ConsumerChart": _obj({"consumer": {"type": "string"}, "service": {"type": ["string", "null"]},
                           "start": TIME, "end": TIME, "step": {"enum": list(STEPS)},
                           "split": {"enum": ["service", None]},
                           "series": {"type": "array", "items": ref("ConsumerSeries")}}),
    "TrafficFigures": _obj(additional=True, properties={
        "requests_count": {"type": ["object", "null"], "properties": {"success": {"type": "integer"},
                                                                      "error": {"type": "integer"}}},
        "latency_ms": {"type": ["object", "null"], "properties": {
            "average": NULLABLE_NUMBER, "p95": NULLABLE_NUMBER, "p99": NULLABLE_NUMBER}},
        "by_status": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}}}),
    "Stats": {"allOf": [ref("TrafficFigures"), {"type": "object", "required": ["service", "start", "end"],
                                                 "properties": {
        "service": {"type": "string"}, "start": TIME, "end": TIME, "collected_until": TIME,
        "step": {"enum": list(STEPS)},
        "series": {"type": "array", "items": {"allOf": [ref("TrafficFigures"),
                                                        _obj({"time": TIME, "partial": {"type": "boolean"}},
                                                             additional=True)]}}}}]},
    "LegacyBandwidth": {"type": "array", "items": _obj({
        "time": {"type": "string", "format": "date-time", "examples": ["2022-02-17T18:39:41.043080+00:00"],
                 "description": "Python isoformat(): +00:00, microseconds when the instant has them"},
        "type": {"enum": ["ingress", "egress"]}, "service": {"type": "string"},
        "route": {"type": ["string", "null"]}, "bandwidth_used": {**NULLABLE_INT, "description":
                                                                  "bytes in the minute; 0: collected, no traffic; "
                                                                  "null: not collected (and the request instant)"}})},
    "Quota": {k: v for k, v in QUOTA_SCHEMA.items() if not k.startswith("$")},
    "QuotaRules": {k: v for k, v in RULES_SCHEMA.items() if not k.startswith("$")},
    "StoredQuota": {"type": "object", "required": ["limit_bytes", "period", "direction", "thresholds", "notify"],
                    "properties": {"warnings": {
                        "type": "array", "items": {"type": "string"},
                        "description": "PUT only, when the service has never been seen (a typo?), with the closest "
                                       "known names; the quota is stored all the same"}}},
    "QuotaList": _obj({"quotas": {"type": "array", "items": {"type": "object"},
                                  "description": "Services' own quotas, each with its `service`"},
                       "consumer_quotas": {"type": "array", "items": {"type": "object"},
                                           "description": "Consumers' own quotas, each with its `consumer`"},
                       "rules": {"type": "array", "items": {"type": "object"}}}),
    "RuleList": _obj({"rules": {"type": "array", "items": {"type": "object"}}}),
    "Audit": _obj({"entries": {"type": "array", "items": _obj({
        "at": TIME, "key": {"type": "string"}, "action": {"enum": ["put", "delete"]}, "old": {},
        "new": {}, "actor": {"type": ["string", "null"]}})}}),
    "Alerts": _obj({"service": {"type": "string"}, "consumer": {"type": "string"},
                    "alerts": {"type": "array", "items": {
        "type": "object", "required": ["threshold", "status", "period_start", "usage_bytes", "limit_bytes"],
        "properties": {"threshold": {"type": "number"},
                       "status": {"enum": ["pending", "sent", "covered", "failed", "no_recipients", "given_up"],
                                  "description": "failed: the last attempt failed, it is retried; given_up: "
                                                 "undelivered 24 h after its first attempt, never retried "
                                                 "(error says why)"},
                       "period_start": TIME, "period_end": TIME, "usage_bytes": {"type": "integer"},
                       "limit_bytes": {"type": "integer"}, "recipients": {"type": "array"},
                       "crossed_at": TIME, "sent_at": {"type": ["string", "null"]},
                       "message_id": {"type": ["string", "null"]}, "covered_by": NULLABLE_NUMBER,
                       "error": {"type": ["string", "null"]}, "forecast": {"type": "boolean"},
                       "forecast_eta": {"type": ["string", "null"]}, "delivered": {"type": "array"},
                       "attempts": {"type": ["integer", "null"]},
                       "first_claimed_at": {"type": ["string", "null"]}}}}}, required=["alerts"]),
}

ERRORS = {
    "400": "A parameter or the body is invalid; `parameter` names it",
    "401": "No x-api-key, or one that is not configured",
    "403": "The key's role may not use this route (admin routes need an admin key)",
    "404": "Unknown service or consumer, or no such quota",
    "412": "If-Match names a version that is no longer current (or nothing is stored): nothing was changed; "
           "`current_version` (and the ETag header) is the current one, null when none is stored",
    "409": "The import is no longer open (committing or committed): nothing was changed",
    "413": "The body is larger than 64 KiB (2 MiB for events and import batches), or a request carries more "
           f"than {MAX_BATCH_EVENTS} events",
    "429": "Throttled; retry after Retry-After seconds",
    "500": "Internal error (logged)",
    "503": "A backend (DynamoDB) is unavailable; retry shortly",
}


def _error(code: str) -> dict:
    response = {"description": ERRORS[code], "content": {"application/json": {"schema": ref("Error")}}}
    if code == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    if code == "412":
        response["headers"] = ETAG_HEADER
    return response


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _linked(response: dict, items: str, key: str, paths: Sequence[str]) -> dict:
    """``response`` with OpenAPI links: the ``key`` of the first of its ``items`` fills the path
    parameter of that name of each of ``paths`` (GET), so a client or a property test can follow a
    listing to its members (links named like ServiceBandwidth)."""
    response["links"] = {
        "".join(part.strip("{}").title() for part in path.split("/")[3:]): {
            "operationRef": "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/get",
            "parameters": {key: f"$response.body#/{items}/0/{key}"}}
        for path in paths}
    return response


def _param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


ETAG_HEADER = {"ETag": {"schema": {"type": "string"},
                        "description": 'The stored version, e.g. "3": send it as If-Match to change exactly it'}}
IF_MATCH = _param("If-Match", "header", {"type": "string"},
                  "Change only if this is still the current version (the ETag a GET answered); "
                  "otherwise 412 and nothing changes. Without it the change applies to whatever is current")


def _with_etag(operation: dict) -> dict:
    operation["responses"]["200"] = {**operation["responses"]["200"], "headers": ETAG_HEADER}
    return operation


_EVENT = {k: v for k, v in EVENT_SCHEMA.items() if k not in ("$schema", "$id")}
_EVENT_RESULT = _obj({"index": {"type": "integer"}, "id": {"type": ["string", "null"]},
                      "source": {"type": ["string", "null"]},
                      "status": {"enum": ["accepted", "duplicate", "refused", "staged"]},
                      "reason": {"type": "string", "description": "refused and duplicate: why"}},
                     required=["index", "id", "source", "status"])
SCHEMAS.update({
    "UsageEvent": _EVENT,
    "PushAnswer": _obj({"accepted": {"type": "integer"}, "duplicate": {"type": "integer"},
                        "refused": {"type": "integer"}, "results": {"type": "array", "items": _EVENT_RESULT}}),
    "ImportBatchAnswer": _obj({"import": {"type": "string"}, "batch": {"type": "integer"},
                               "events": {"type": "integer", "description": "events staged"},
                               "accepted": {"type": "integer"}, "duplicate": {"type": "integer"},
                               "refused": {"type": "integer"}, "staged": {"type": "integer"},
                               "results": {"type": "array", "items": _EVENT_RESULT}},
                              required=["import", "batch", "events", "refused", "results"]),
    "Import": _obj({"id": {"type": "string"}, "status": {"enum": ["open", "committing", "committed"]},
                    "description": {"type": ["string", "null"]}, "created": TIME,
                    "batches": {"type": "integer"}, "batches_applied": {"type": "integer"},
                    "result": {"type": ["object", "null"], "properties": {"accepted": {"type": "integer"},
                                                                          "duplicate": {"type": "integer"}}},
                    "committed": {"type": ["string", "null"]},
                    "expires": {"type": ["string", "null"], "description": "an open import: when it expires"}}),
    "ImportList": _obj({"imports": {"type": "array", "items": ref("Import")}}),
})
# An event of a push may be any JSON value: one that is not a valid UsageEvent is refused alone
# (its result says why) and never fails the request, so the request body accepts it.
PUSHED_EVENT = {"description": "A UsageEvent (components/schemas/UsageEvent); anything else is refused alone, "
                "with the reason in its result"}
IMPORT_ID = {"name": "import_id", "in": "path", "required": True, "description": "The id POST /v1/imports gave",
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"}}
PUSH_ERRORS = ("400", "401", "403", "413", "429", "500", "503")


def _with_body(operation: dict, content: dict) -> dict:
    operation["requestBody"] = {"required": True, "content": content}
    return operation


NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"  # what quotas.is_service_name / is_consumer_name allow
SERVICE = _param("service", "path", {"type": "string", "minLength": 1, "maxLength": 200,
                                      "pattern": NO_CONTROL_CHARACTERS},
                 "Service name as Kong labels it (at most 200 characters, no control characters)")
CONSUMER = _param("consumer", "path", {"type": "string", "minLength": 1, "maxLength": 1000,
                                        "pattern": NO_CONTROL_CHARACTERS},
                  "Consumer key: Kong's consumer username, as <workspace>:<name> outside the default "
                  "workspace; URL-encoded (ws%3Aname). (anonymous) is traffic without a consumer, not a "
                  "consumer: 404, and it can have no quota (400)")
TIME_PARAM = {"type": "string", "pattern": r"^(|-?\d{1,12}(\.\d{1,9})?|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2}))$"}
START = _param("start", "query", TIME_PARAM,
               "RFC 3339 time or epoch seconds; empty or absent: end - 1 h; must be before end")
END = _param("end", "query", TIME_PARAM, "RFC 3339 time or epoch seconds; empty or absent: now")
STEP = _param("step", "query", {"enum": ["auto", *STEPS]},
              f"Bucket size; auto keeps a chart under about 1,500 points; more than {MAX_POINTS} points is a 400")


def _operation(summary: str, ok: dict, params=(), errors=("400", "401", "403", "404", "429", "500", "503"),
               body: Optional[dict] = None, secured: bool = True, tag: str = "usage") -> dict:
    operation = {"summary": summary, "tags": [tag], "parameters": list(params),
                 "responses": {"200": ok, **{code: _error(code) for code in errors}}}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if secured:
        operation["security"] = [{"ApiKey": []}]
    else:
        operation["security"] = []
    return operation


@functools.lru_cache(maxsize=1)
def openapi_spec() -> dict:
    admin_errors = ("400", "401", "403", "404", "413", "429", "500", "503")
    paths = {
        "/v1/health": {"get": _operation("Versions and configured backends", _json(ref("Health")),
                                         errors=("500",), secured=False, tag="operations")},
        "/v1/collector/status": {"get": _operation("The collector's watermark, last run and last error",
                                                   _json(ref("CollectorStatus")), tag="operations")},
        "/v1/services": {"get": _operation("Every service with its usage in the current quota period",
                                           _linked(_json(ref("ServicesPage")), "services", "service", (
                                               "/v1/services/{service}", "/v1/services/{service}/bandwidth",
                                               "/v1/services/{service}/stats")), params=[
            _param("sort", "query", {"enum": ["usage", "name", "percent"]}, "Sort key (default usage)"),
            _param("order", "query", {"enum": ["asc", "desc"]}, "Sort order (default desc)"),
            _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
            _param("cursor", "query", {"type": "string", "pattern": "^[A-Za-z0-9_=-]*$"},
                   "next_cursor of the previous page (opaque; empty: the first page)")])},
        "/v1/services/{service}": {"get": _operation("One service's summary", _json(ref("ServiceSummary")),
                                                     params=[SERVICE])},
        "/v1/services/{service}/bandwidth": {"get": _operation(
            "Bandwidth time series, chart-ready", {
                "description": "Series; as CSV with Accept: text/csv or format=csv",
                "content": {"application/json": {"schema": ref("Chart")},
                            "text/csv": {"schema": {"type": "string"}}}},
            params=[SERVICE, START, END, STEP,
                    _param("direction", "query", {"enum": ["ingress", "egress", "total", "all"]},
                           "all (default): one series per direction"),
                    _param("route", "query", {"type": "string"}, "Only this route"),
                    _param("consumer", "query", {"type": "string", "minLength": 1, "maxLength": 1000},
                           "Only this consumer's bytes (Kong's consumer label, the username); "
                           "\"(anonymous)\" is traffic without a consumer (Kong 2.x, per_consumer off, "
                           "unauthenticated; a consumer literally named \"(anonymous)\" is counted with it). "
                           "A point is null where its buckets were stored before consumers were kept. "
                           "Not with route= or split=route: consumers are kept per service, not per route"),
                    _param("split", "query", {"enum": ["route", "consumer", "source"]},
                           "route: one series per route. A bucket keeps at most 500 routes by name; the bytes "
                           "of the others are in a series whose route is \"(other routes)\". consumer: one "
                           "series per consumer, adding up to the service (at most 300 by name a bucket, the "
                           "others in \"(other consumers)\"); CSV then has a consumer column after route. source: the "
                           "scraped and the pushed bytes apart (series with source scraped / pushed; CSV then has "
                           "a source column); without it a point is their sum"),
                    _param("format", "query", {"enum": ["json", "csv"]}, "Answer format")])},
        "/v1/services/{service}/stats": {"get": _operation(
            "Requests (success/error) and latency (average, p95, p99) from Kong's counters",
            _json(ref("Stats")), params=[SERVICE, START, END,
                                         _param("step", "query", {"enum": list(STEPS)}, "Also as a series")])},
        "/v1/consumers": {"get": _operation(
            "Every consumer with its usage in its current quota period, a page at a time",
            _linked(_json(ref("ConsumersPage")), "consumers", "consumer", (
                "/v1/consumers/{consumer}", "/v1/consumers/{consumer}/bandwidth")), params=[
                _param("sort", "query", {"enum": ["usage", "name", "percent"]},
                       "Sort key (default usage). usage and percent follow the ranking the collector "
                       "refreshes every minute up to 100 consumers and every 10 minutes beyond (ranked_at): "
                       "the order is as of then; the values are the consumers' figures as the collector "
                       "last wrote them (every CONSUMER_WRITE_MINUTES; one consumer's own route adds the "
                       "minutes since); a consumer first seen since is listed by name until the next ranking"),
                _param("order", "query", {"enum": ["asc", "desc"]}, "Sort order (default desc)"),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
                _param("cursor", "query", {"type": "string", "pattern": "^[A-Za-z0-9_=-]*$"},
                       "next_cursor of the previous page of the same sort (opaque; empty: the first page)")],
            tag="consumers")},
        "/v1/consumers/{consumer}": {"get": _operation("One consumer's usage in its period, per service, and its quota, "
                                                       "up to the last collected minute",
                                                       _json(ref("ConsumerSummary")), params=[CONSUMER],
                                                       tag="consumers")},
        "/v1/consumers/{consumer}/bandwidth": {"get": _operation(
            "A consumer's bandwidth time series, chart-ready, summed over the services it used", {
                "description": "Series; as CSV (time,consumer,service,direction,bytes,partial) with "
                               "Accept: text/csv or format=csv",
                "content": {"application/json": {"schema": ref("ConsumerChart")},
                            "text/csv": {"schema": {"type": "string"}}}},
            params=[CONSUMER, START, END, STEP,
                    _param("direction", "query", {"enum": ["ingress", "egress", "total", "all"]},
                           "all (default): one series per direction"),
                    _param("service", "query", {"type": "string", "minLength": 1, "maxLength": 200},
                           "Only the consumer's bytes through this service (404: unknown service)"),
                    _param("split", "query", {"enum": ["service"]}, "service: one series per service"),
                    _param("format", "query", {"enum": ["json", "csv"]}, "Answer format")], tag="consumers")},
        "/metrics/bandwidth_used": {"get": _operation(
            "The older frontend's endpoint: each whole minute that starts in the lookback, then the "
            "request instant. An unknown service or route answers nulls, not 404",
            _json(ref("LegacyBandwidth")), params=[
                _param("service", "query", {"type": "string", "minLength": 1}, "Service", required=True),
                _param("lookback_duration", "query", {"type": "string", "minLength": 2,
                                                      "pattern": DURATION_PATTERN, "examples": ["5m", "1h30m"]},
                       "Prometheus-style duration (90s, 1h30m), more than 0 and at most 7d (default 5m)"),
                _param("type", "query", {"enum": ["ingress", "egress"]}, "Direction (default egress)"),
                _param("route", "query", {"type": "string"}, "Only this route")], tag="legacy")},
        "/v1/services/{service}/quota": {
            "get": _with_etag(_operation("The service's own quota", _json(ref("StoredQuota")), params=[SERVICE],
                                         tag="quotas")),
            "put": _with_etag(_operation("Set the service's quota (validated against /v1/schemas/quota)",
                                         _json(ref("StoredQuota")), params=[SERVICE, IF_MATCH],
                                         errors=(*admin_errors, "412"), body=ref("Quota"), tag="quotas")),
            "delete": {**_operation("Remove the service's quota", {"description": "unused"},
                                    params=[SERVICE, IF_MATCH], errors=admin_errors, tag="quotas"),
                       "responses": {"204": {"description": "Removed"},
                                     **{code: _error(code) for code in (*admin_errors, "412")}}},
        },
        "/v1/consumers/{consumer}/quota": {
            "get": _with_etag(_operation("The consumer's own quota (counted on every service)",
                                         _json(ref("StoredQuota")), params=[CONSUMER], tag="quotas")),
            "put": _with_etag(_operation(
                "Set the consumer's quota: the same body, versions and audit as a service's, stored apart from "
                "any service of the same name (audit key consumer-quota/<consumer>). With action reject the "
                "consumer is refused (429) on every service from reject_at until the period ends",
                _json(ref("StoredQuota")), params=[CONSUMER, IF_MATCH], errors=(*admin_errors, "412"),
                body=ref("Quota"), tag="quotas")),
            "delete": {**_operation("Remove the consumer's quota", {"description": "unused"},
                                    params=[CONSUMER, IF_MATCH], errors=admin_errors, tag="quotas"),
                       "responses": {"204": {"description": "Removed"},
                                     **{code: _error(code) for code in (*admin_errors, "412")}}},
        },
        "/v1/consumers/{consumer}/alerts": {"get": _operation("The consumer's alert history",
                                                              _json(ref("Alerts")), params=[CONSUMER],
                                                              tag="alerts")},
        "/v1/quotas": {"get": _operation("Every service and consumer quota, and the rules", _json(ref("QuotaList")),
                                         tag="quotas")},
        "/v1/quota-rules": {
            "get": _with_etag(_operation("The ordered quota rules", _json(ref("RuleList")), tag="quotas")),
            "put": _with_etag(_operation("Replace the rules (first matching pattern applies)", _json(ref("RuleList")),
                                         params=[IF_MATCH], errors=(*admin_errors, "412"), body=ref("QuotaRules"),
                                         tag="quotas")),
        },
        "/v1/quota-audit": {"get": _operation("Every quota change: when, key, old, new", _json(ref("Audit")),
                                              params=[_param("limit", "query", {"type": "integer", "minimum": 1,
                                                                                "maximum": 1000}, "Entries")],
                                              tag="quotas")},
        "/v1/schemas/quota": {"get": _operation("JSON Schema of a quota body", _json({"type": "object"}),
                                                tag="quotas")},
        "/v1/schemas/quota-rules": {"get": _operation("JSON Schema of the rules body", _json({"type": "object"}),
                                                      tag="quotas")},
        "/v1/enforcement": {"get": _operation(
            "Services and consumers blocked at the gateway now (quota action reject), why, and a decK file for "
            "DB-less Kong or Konnect", _json(ref("Enforcement")), tag="alerts")},
        "/v1/services/{service}/alerts": {"get": _operation("Alert history", _json(ref("Alerts")),
                                                            params=[SERVICE], tag="alerts")},
        "/v1/events": {"post": _with_body(_operation(
            f"Push usage events (CloudEvents 1.0 JSON): one (application/cloudevents+json or application/json) or a "
            f"batch of at most {MAX_BATCH_EVENTS} (application/cloudevents-batch+json). 200 whenever the request is "
            "acceptable: each event's fate is in results (accepted, duplicate: (source, id) already counted "
            "within 35 days or repeated in the request, refused: why), like a 207. ingest or admin keys",
            _json(ref("PushAnswer")), errors=PUSH_ERRORS, tag="push"), {
                "application/cloudevents+json": {"schema": PUSHED_EVENT},
                "application/json": {"schema": PUSHED_EVENT},
                "application/cloudevents-batch+json": {"schema": {"type": "array", "minItems": 1,
                                                                  "maxItems": MAX_BATCH_EVENTS,
                                                                  "items": PUSHED_EVENT}}})},
        "/v1/imports": {
            "post": {**_operation("Register a bulk import (ingest or admin keys); it counts nothing until committed "
                                  "and expires uncommitted after 7 days", _json(ref("Import")),
                                  errors=("400", "401", "403", "429", "500", "503"), tag="push"),
                     "responses": {"201": _json(ref("Import"), "Registered"),
                                   **{c: _error(c) for c in ("400", "401", "403", "429", "500", "503")}},
                     "requestBody": {"required": False, "content": {"application/json": {"schema": _obj(
                         {"description": {"type": "string", "maxLength": 200}}, required=[])}}}},
            "get": _operation("The running imports (open or committing)", _json(ref("ImportList")),
                              params=[_param("status", "query", {"enum": ["running"]}, "running (the default)")],
                              tag="push"),
        },
        "/v1/imports/{import_id}/batches/{number}": {"put": _with_body(_operation(
            "Add or replace batch number N of an open import (at most 1,000 events; validated like /v1/events; "
            "valid events are staged). Sending a batch again is harmless", _json(ref("ImportBatchAnswer")),
            params=[IMPORT_ID, {"name": "number", "in": "path", "required": True, "description": "0 to 999999",
                                "schema": {"type": "string", "pattern": "^[0-9]{1,6}$"}}],
            errors=(*PUSH_ERRORS, "404", "409"), tag="push"), {
                "application/cloudevents-batch+json": {"schema": {"type": "array", "minItems": 1,
                                                                  "maxItems": MAX_BATCH_EVENTS,
                                                                  "items": PUSHED_EVENT}}})},
        "/v1/imports/{import_id}/commit": {"post": {**_operation(
            "Apply the whole import: 200 once committed (again: the same answer, counted once), 202 while a large "
            "one is still being applied (call again: it resumes)", _json(ref("Import"), "Committed"),
            params=[IMPORT_ID], errors=("401", "403", "404", "409", "429", "500", "503"), tag="push"),
            "responses": {"200": _json(ref("Import"), "Committed"), "202": _json(ref("Import"), "Still committing"),
                          **{c: _error(c) for c in ("401", "403", "404", "409", "429", "500", "503")}}}},
        "/openapi.json": {"get": _operation("This document", _json({"type": "object"}), errors=("500",),
                                            secured=False, tag="operations")},
        "/docs": {"get": _operation("This document in Swagger UI (Authorize with x-api-key, then Try it out)", {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            errors=("500",), secured=False, tag="operations")},
        "/docs/{asset}": {"get": _operation(f"Swagger UI {SWAGGER_UI_VERSION}'s files, vendored", {
            "description": "The file", "content": {"text/javascript": {"schema": {"type": "string"}},
                                                   "text/css": {"schema": {"type": "string"}}}},
            params=[_param("asset", "path", {"enum": list(SWAGGER_UI_ASSETS)}, "File name")],
            errors=("404", "500"), secured=False, tag="operations")},
        "/dashboard": {"get": _operation("The built-in dashboard", {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            errors=("500",), secured=False, tag="operations")},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bandwidth Meter API", "version": __version__,
                 "description": "Exact API-gateway bandwidth from Kong's Prometheus counters: chart-ready "
                                "series, traffic stats, quotas and alerts. Times are UTC RFC 3339 with Z (the older "
                                "frontend's /metrics/bandwidth_used keeps its isoformat +00:00)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                       "description": "read keys: every GET; ingest keys: only pushing usage (events, imports); "
                                      "admin keys: everything"}}},
    }


SWAGGER_UI_VERSION = "5.35.0"  # npm swagger-ui-dist, vendored in chalicelib/api/swaggerui/ (see its README)
SWAGGER_UI_DIR = Path(__file__).with_name("swaggerui")
SWAGGER_UI_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
                     "swagger-ui.css": "text/css; charset=utf-8"}


def swagger_ui_asset(name: str) -> Tuple[str, str]:
    """A vendored Swagger UI file and its content type (NotFound for any other name)."""
    if name not in SWAGGER_UI_ASSETS:
        raise NotFound(f"no docs asset {name!r}")
    return _read_asset(name), SWAGGER_UI_ASSETS[name]


@functools.lru_cache(maxsize=None)
def _read_asset(name: str) -> str:
    return (SWAGGER_UI_DIR / name).read_text(encoding="utf-8")


# Relative URLs throughout, so the page works at /docs and under an API Gateway stage prefix
# (/api/docs). The spec is fetched and given the page's own base as its server, so "Try it out"
# calls this API (with the x-api-key from Authorize) wherever it is mounted; validatorUrl null
# keeps Swagger UI from calling validator.swagger.io.
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Bandwidth Meter API</title>
<link rel="stylesheet" href="docs/swagger-ui.css?v={version}">
<style>body{{margin:0}}</style>
</head>
<body>
<noscript><p>This page needs JavaScript; the spec itself is <a href="openapi.json">openapi.json</a>.</p></noscript>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js?v={version}"></script>
<script>
(function () {{
  var base = new URL(".", window.location.href).href.replace(/\\/$/, "");
  fetch(base + "/openapi.json").then(function (r) {{ return r.json(); }}).then(function (spec) {{
    spec.servers = [{{url: base, description: "this API"}}];
    window.ui = SwaggerUIBundle({{
      spec: spec, dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true,
      validatorUrl: null, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
    }});
  }}).catch(function (e) {{
    document.getElementById("swagger-ui").textContent = "Could not load openapi.json: " + e;
  }});
}})();
</script>
</body>
</html>
"""


def docs_html() -> str:
    """Swagger UI over /openapi.json, from the vendored files (no network beyond this API)."""
    return DOCS_PAGE.format(version=SWAGGER_UI_VERSION)
