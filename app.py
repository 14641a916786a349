"""Bandwidth Meter's three Lambda functions. Wiring only: the logic lives in chalicelib/.

- ``collect``: every minute (EventBridge), raw Prometheus samples -> exact usage in DynamoDB, then
  the alerts' tick and the enforcement reconcile (chalicelib/schedule.py).
- ``alerts``: DynamoDB stream of the usage table -> quota thresholds -> SES email.
- the API (``api_handler``): REST routes below, reading DynamoDB only.
"""
import os
from datetime import datetime, timezone

from chalice import Chalice, Rate, Response

from chalicelib import __version__, bootstrap, schedule
from chalicelib.api import access, charts, consumer_quotas, consumers, enforcement, events, legacy, overview, stats, status
from chalicelib.collect.shards import shard_number
from chalicelib.api.http import (INGEST, allowed_origin, choice, cors_config, endpoint, integer, json_body,
                                 versioned)
from chalicelib.core import observability
from chalicelib.core.quotas import QUOTA_SCHEMA, RULES_SCHEMA, validate_service_name, without_webhook

app = Chalice(app_name="bandwidth-meter")
app.api.cors = cors_config()
# Outermost, around every handler: JSON logs with the invocation's context in Lambda, and the
# invocation's metrics flushed once at its end (chalicelib/core/observability.py).
app.register_middleware(observability.middleware, "all")

# Chalice needs the stream ARN when it builds the deployment; `scripts/bootstrap_aws.py`
# (or the CloudFormation template) provides the real one. The placeholder serves local runs.
USAGE_STREAM_ARN = os.environ.get(
    "USAGE_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:000000000000:table/bandwidth-meter/stream/local",
)


# -- the collector and the alerts function ---------------------------------------------------
@app.schedule(Rate(1, unit=Rate.MINUTES), name="collect")
def collect(event):
    deps = bootstrap.current()
    if deps.settings.shard_count > 1:  # one worker per shard (chalicelib/collect/fanout.py)
        return {"status": "fanned_out", "shards": deps.shard_invoker.start_all(deps.settings.shard_count)}
    return schedule.scheduled_run(deps, shard=0)  # collect, then the tick and the reconcile


@app.lambda_function(name="collect_shard")
def collect_shard(event, context):
    deps = bootstrap.current()
    return schedule.scheduled_run(deps, shard_number(event, deps.settings.shard_count))


@app.on_dynamodb_record(stream_arn=USAGE_STREAM_ARN, name="alerts", batch_size=100,
                        starting_position="TRIM_HORIZON")
def alerts(event):
    deps = bootstrap.current()
    return deps.alert_processor.handle_batch(event, now=deps.clock())


# -- the API ---------------------------------------------------------------------------------
# Routes other than health, docs and the dashboard are api_key_required: in AWS, API Gateway
# checks the key against the usage plan (limits); chalicelib/api/access.py maps it to a role.
def _params():
    return app.current_request.query_params or {}


@app.middleware("http")
def cors_allow_list(event, get_response):
    response = get_response(event)
    origin = allowed_origin(event.headers.get("origin"), bootstrap.current().settings.cors_origins)
    response.headers.pop("Access-Control-Allow-Origin", None)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


@app.middleware("http")
def access_control(event, get_response):
    """API keys, roles and throttling (chalicelib/api/access.py); inside CORS so refusals carry it."""
    return bootstrap.current().access_guard.guard(event, get_response, app.routes)


@app.route("/v1/health", methods=["GET"])
@endpoint(role="public")
def health():
    return {"status": "ok", "version": __version__, "backends": bootstrap.current().settings.public_summary()}


@app.route("/v1/collector/status", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def collector_status():
    deps = bootstrap.current()
    count = deps.settings.shard_count
    return status.collector_status(deps.store.state(), deps.settings, deps.clock(),
                                   deps.store.states(count) if count > 1 else None,
                                   enforcement=deps.enforcement_ledger.state())


@app.route("/v1/services", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def list_services():
    p, deps = _params(), bootstrap.current()
    return overview.list_services(
        deps.store, deps.quotas.load(), deps.clock(),
        sort=choice(p, "sort", ("usage", "name", "percent"), "usage"),
        order=choice(p, "order", ("asc", "desc"), "desc"),
        limit=integer(p, "limit", 100, 1, 1000), cursor=p.get("cursor"))


@app.route("/v1/services/{service}", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def get_service(service):
    deps = bootstrap.current()
    item = charts.require_service(deps.store, service)
    return overview.service_summary(deps.store, item, deps.quotas.quota_for(service), deps.clock())


@app.route("/v1/services/{service}/bandwidth", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def service_bandwidth(service):
    p, deps = _params(), bootstrap.current()
    store, now = deps.store, deps.clock()
    coverage = charts.service_coverage(store, service, now)
    start, end = charts.parse_range(p, now)
    chart = charts.build_series(
        store, coverage, service, start, end, charts.choose_step(start, end, p.get("step"), coverage),
        direction=choice(p, "direction", ("ingress", "egress", "total", "all"), "all"),
        route=p.get("route"), split=choice(p, "split", ("route", "consumer", "source"), None), consumer=p.get("consumer"))
    accept = app.current_request.headers.get("accept", "")
    if choice(p, "format", ("json", "csv"), None) == "csv" or "text/csv" in accept:
        return Response(body=charts.series_csv(chart), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8"})
    return chart


@app.route("/v1/services/{service}/stats", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def service_stats(service):
    p, deps = _params(), bootstrap.current()
    store, now = deps.store, deps.clock()
    coverage = charts.service_coverage(store, service, now)
    start, end = charts.parse_range(p, now)
    step = charts.choose_step(start, end, p["step"], coverage) if p.get("step") else None
    return stats.service_stats(store, coverage, service, start, end, step)


@app.route("/v1/consumers", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def list_consumers():
    p, deps = _params(), bootstrap.current()
    return consumers.list_consumers(
        deps.store, deps.quotas.load(), deps.settings.shard_count, deps.clock(),
        sort=choice(p, "sort", ("usage", "name", "percent"), "usage"),
        order=choice(p, "order", ("asc", "desc"), "desc"),
        limit=integer(p, "limit", 100, 1, 1000), cursor=p.get("cursor"))


@app.route("/v1/consumers/{consumer}", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def get_consumer(consumer):
    deps = bootstrap.current()
    key, items = consumers.require_consumer(deps.store, consumer, deps.settings.shard_count)
    return consumers.consumer_summary(deps.store, key, items, deps.quotas.load().quota_for_consumer(key), deps.clock(),
                                      up_to_date=True)


@app.route("/v1/consumers/{consumer}/bandwidth", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def consumer_bandwidth(consumer):
    p, deps = _params(), bootstrap.current()
    key, items = consumers.require_consumer(deps.store, consumer, deps.settings.shard_count)
    chart = consumers.consumer_chart(
        deps.store, key, items, deps.clock(), p,
        direction=choice(p, "direction", ("ingress", "egress", "total", "all"), "all"),
        split=choice(p, "split", ("service",), None))
    accept = app.current_request.headers.get("accept", "")
    if choice(p, "format", ("json", "csv"), None) == "csv" or "text/csv" in accept:
        return Response(body=consumers.chart_csv(chart), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8"})
    return chart


@app.route("/metrics/bandwidth_used", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def legacy_bandwidth_used():
    query, deps = legacy.LegacyQuery.from_params(_params()), bootstrap.current()
    return legacy.bandwidth_used(deps.store, query, now=datetime.fromtimestamp(deps.clock(), timezone.utc))


@app.route("/v1/services/{service}/quota", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def get_quota(service):
    quota = bootstrap.current().quotas.get_versioned(validate_service_name(service))
    return versioned(_as_caller_may_see(quota.body), quota.etag)


@app.route("/v1/services/{service}/quota", methods=["PUT"], content_types=["application/json"],
           api_key_required=True)
@endpoint(role="admin")
def put_quota(service):
    deps = bootstrap.current()
    quota = deps.quotas.put_versioned(
        validate_service_name(service), json_body(app.current_request.raw_body),
        actor=access.actor(app.current_request), if_match=app.current_request.headers.get("if-match"))
    return versioned(overview.with_warnings(quota.body, deps.store, service), quota.etag)


@app.route("/v1/services/{service}/quota", methods=["DELETE"], api_key_required=True)
@endpoint(role="admin")
def delete_quota(service):
    bootstrap.current().quotas.delete(validate_service_name(service), actor=access.actor(app.current_request),
                                      if_match=app.current_request.headers.get("if-match"))
    return Response(body="", status_code=204)


@app.route("/v1/consumers/{consumer}/quota", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def get_consumer_quota(consumer):
    quota = consumer_quotas.get(bootstrap.current().quotas, consumer)
    return versioned(_as_caller_may_see(quota.body), quota.etag)


@app.route("/v1/consumers/{consumer}/quota", methods=["PUT"], content_types=["application/json"],
           api_key_required=True)
@endpoint(role="admin")
def put_consumer_quota(consumer):
    deps, request = bootstrap.current(), app.current_request
    quota = consumer_quotas.put(deps.quotas, consumer, json_body(request.raw_body), actor=access.actor(request),
                                if_match=request.headers.get("if-match"))
    return versioned(consumer_quotas.with_warnings(quota.body, deps.consumers, consumer), quota.etag)


@app.route("/v1/consumers/{consumer}/quota", methods=["DELETE"], api_key_required=True)
@endpoint(role="admin")
def delete_consumer_quota(consumer):
    consumer_quotas.delete(bootstrap.current().quotas, consumer, actor=access.actor(app.current_request),
                           if_match=app.current_request.headers.get("if-match"))
    return Response(body="", status_code=204)


@app.route("/v1/consumers/{consumer}/alerts", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def consumer_alerts(consumer):
    history = consumer_quotas.alert_history(bootstrap.current().ledger, consumer)
    if not access.is_admin(app.current_request):  # a delivery error may name the webhook URL
        history = [{**a, "error": "delivery failed (details for admin keys)" if a.get("error") else None}
                   for a in history]
    return {"consumer": consumer, "alerts": history}


def _as_caller_may_see(body: dict) -> dict:
    """Quotas and rules are readable with a read key, but webhook URLs (often holding a token)
    only with an admin key."""
    return body if access.is_admin(app.current_request) else without_webhook(body)


@app.route("/v1/quotas", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def list_quotas():
    snapshot = bootstrap.current().quotas.load()
    return {"quotas": [{"service": s, **_as_caller_may_see(q)} for s, q in sorted(snapshot.quotas.items())],
            "consumer_quotas": [{"consumer": c, **_as_caller_may_see(q)}
                                for c, q in sorted(snapshot.consumer_quotas.items())],
            "rules": [_as_caller_may_see(r) for r in snapshot.rules]}


@app.route("/v1/quota-rules", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def get_quota_rules():
    rules = bootstrap.current().quotas.get_rules_versioned()
    return versioned({"rules": [_as_caller_may_see(r) for r in rules.body]}, rules.etag)


@app.route("/v1/quota-rules", methods=["PUT"], content_types=["application/json"],
           api_key_required=True)
@endpoint(role="admin")
def put_quota_rules():
    rules = bootstrap.current().quotas.put_rules_versioned(
        json_body(app.current_request.raw_body), actor=access.actor(app.current_request),
        if_match=app.current_request.headers.get("if-match"))
    return versioned({"rules": rules.body}, rules.etag)


@app.route("/v1/quota-audit", methods=["GET"], api_key_required=True)
@endpoint(role="admin")
def quota_audit():
    return {"entries": bootstrap.current().quotas.audit_log(limit=integer(_params(), "limit", 100, 1, 1000))}


@app.route("/v1/schemas/quota", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def quota_schema():
    return QUOTA_SCHEMA


@app.route("/v1/schemas/quota-rules", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def quota_rules_schema():
    return RULES_SCHEMA


@app.route("/v1/enforcement", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def enforcement_listing():
    deps = bootstrap.current()
    return enforcement.listing(deps.store, deps.quotas.load(), deps.enforcement_ledger.state(), deps.settings,
                               deps.clock(), deps.consumers)


@app.route("/v1/services/{service}/alerts", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def service_alerts(service):
    history = bootstrap.current().ledger.history(validate_service_name(service))
    if not access.is_admin(app.current_request):  # a delivery error may name the webhook URL
        history = [{**a, "error": "delivery failed (details for admin keys)" if a.get("error") else None}
                   for a in history]
    return {"service": service, "alerts": history}


# -- pushed usage: events and imports (chalicelib/api/events.py) --------------------------------
@app.route("/v1/events", methods=["POST"], content_types=events.EVENT_CONTENT_TYPES, api_key_required=True)
@endpoint(role=INGEST)
def push_events():
    deps, request = bootstrap.current(), app.current_request
    return events.post_events(deps.store.pushed, request.raw_body, request.headers.get("content-type", ""),
                              deps.clock(), deps.settings.minute_ttl_days)


@app.route("/v1/imports", methods=["POST"], content_types=["application/json"], api_key_required=True)
@endpoint(role=INGEST)
def register_import():
    deps = bootstrap.current()
    return Response(body=events.register_import(deps.imports, app.current_request.raw_body, deps.clock()),
                    status_code=201, headers={"Content-Type": "application/json"})


@app.route("/v1/imports", methods=["GET"], api_key_required=True)
@endpoint(role="read")
def list_imports():
    p, deps = _params(), bootstrap.current()
    choice(p, "status", ("running",), "running")
    return {"imports": deps.imports.running(deps.clock())}


@app.route("/v1/imports/{import_id}/batches/{number}", methods=["PUT"], content_types=events.BATCH_CONTENT_TYPES,
           api_key_required=True)
@endpoint(role=INGEST)
def put_import_batch(import_id, number):
    deps = bootstrap.current()
    return events.put_import_batch(deps.imports, import_id, number, app.current_request.raw_body, deps.clock(),
                                   deps.settings.minute_ttl_days)


@app.route("/v1/imports/{import_id}/commit", methods=["POST"], api_key_required=True)
@endpoint(role=INGEST)
def commit_import(import_id):
    deps = bootstrap.current()
    result = deps.imports.commit(import_id, deps.clock())
    return Response(body=result, status_code=200 if result["status"] == "committed" else 202,
                    headers={"Content-Type": "application/json"})


# -- documentation and the dashboard -----------------------------------------------------------
@app.route("/openapi.json", methods=["GET"])
@endpoint(role="public")
def openapi_spec():
    from chalicelib.api import apidocs

    return apidocs.openapi_spec()


@app.route("/docs", methods=["GET"])
@endpoint(role="public")
def api_docs():
    from chalicelib.api import apidocs

    return Response(body=apidocs.docs_html(), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})


@app.route("/docs/{asset}", methods=["GET"])
@endpoint(role="public")
def api_docs_asset(asset):
    from chalicelib.api import apidocs

    body, content_type = apidocs.swagger_ui_asset(asset)
    return Response(body=body, status_code=200,
                    headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"})


@app.route("/", methods=["GET"])
@endpoint(role="public")
def index():
    # Relative, so it stays under an API Gateway stage prefix or a custom domain's base path.
    return Response(body="", status_code=302, headers={"Location": "dashboard"})


@app.route("/dashboard", methods=["GET"])
@endpoint(role="public")
def dashboard():
    from chalicelib.api import dashboard as page

    return Response(body=page.html(), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})
