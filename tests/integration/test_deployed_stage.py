"""The packaged stack's functions, run as Lambda would run them: the environment each one gets
from the template (default stage, prod), AWS as a moto server holding the SSM key registry and
secrets, Prometheus behind authentication. Checks that the API is closed to the wrong keys with
CORS that is never '*', that secrets come from SSM, and that every AWS call each function makes
is allowed by its own role (and that the roles refuse what the function must not do)."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time

import boto3
import pytest
import requests

from chalicelib import bootstrap
from chalicelib.core import models, tables
from tests.support.deployed import (ACCOUNT, REGION, AuthProxy, CallRecorder, IamRequest, LambdaContext, Receiver,
                                    Stack, json_body, policy_allows, proxy_event)
from tests.support.openmetrics import History


ORIGINS = ["https://bandwidth.example.com", "https://ops.example.com"]
TABLE = "bandwidth-meter-prod-UsageTable-1TEST"
PARAMETERS = "/bandwidth-meter/bandwidth-meter-prod"  # ParameterPath's default: the stack's own path
BEARER = "prom-bearer-0123456789"
WEBHOOK_SECRET = "whsec-0123456789abcdef"
WORKSPACE = "ws-0123abcd"
BASE = int(time.time() // 3600 * 3600) - 6 * 3600  # history six hours back (an hour boundary)
ENV_PREFIXES = ("AWS_", "PROMETHEUS_", "COLLECT_", "KONG_", "MAX_BACKFILL", "INITIAL_BACKFILL", "API_KEYS",
                "THROTTLE_", "BWMETER_", "WEBHOOK_", "CORS_", "STAGE", "TABLE_NAME", "ALERT_FROM", "USAGE_STREAM",
                "SECRETS_", "PUBLIC_URL")
# Not in the template and not about safety: how far back the very first run reaches, so that it
# finds the test's history; traffic statistics are off to keep the run short.
TUNING = {"INITIAL_BACKFILL_MINUTES": "420", "MAX_BACKFILL_MINUTES": "600", "COLLECT_TRAFFIC_STATS": "false"}


def history() -> str:
    h = History()
    labels = {"service": "payments", "route": "checkout", "consumer": "", "workspace": "default",
              "instance": "node-a:8001", "job": "kong"}
    h.add("kong_bandwidth_bytes", {**labels, "direction": "egress"},
          [(t, 100 * i) for i, t in enumerate(range(BASE, BASE + 1800, 15))])
    return h.render()


@pytest.fixture(scope="module")
def world(moto_server, packaged_template, prometheus_factory):
    """moto (table, keys in API Gateway, the registry written by the stack's own key resource,
    secrets, SES sender), Prometheus behind an auth proxy, a webhook receiver."""
    from deploy import key_registry

    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            patch.delenv(name)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
                        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto_server,
                        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}.items():
        patch.setenv(name, value)
    session = boto3.session.Session(region_name=REGION)
    apigw, ssm = (session.client(s, endpoint_url=moto_server) for s in ("apigateway", "ssm"))
    models.bind(TABLE, REGION, moto_server)
    stream_arn = tables.ensure_table()
    table_arn = stream_arn.split("/stream/")[0]
    session.client("ses", endpoint_url=moto_server).verify_email_identity(EmailAddress="alerts@example.com")
    rest_api = apigw.create_rest_api(name="bandwidth-meter")["id"]
    admin = apigw.create_api_key(name="bandwidth-meter-prod-admin", enabled=True)
    dashboard = apigw.create_api_key(name="bandwidth-meter-prod-dashboard", enabled=True)
    ssm.put_parameter(Name=f"{PARAMETERS}/prometheus/bearer-token", Value=BEARER, Type="SecureString")
    ssm.put_parameter(Name=f"{PARAMETERS}/webhook/secret", Value=WEBHOOK_SECRET, Type="SecureString")

    prometheus = prometheus_factory.from_history(history())
    bearer_proxy = AuthProxy(prometheus.url)
    amp_proxy = AuthProxy(prometheus.url, strip_prefix=f"/workspaces/{WORKSPACE}")
    receiver = Receiver()
    names = {"UsageTable": TABLE, "UsageTable.Arn": table_arn, "UsageTable.StreamArn": stream_arn,
             "AdminKey": admin["id"], "DashboardKey": dashboard["id"], "RestAPI": rest_api,
             "UsagePlan": "plan1", "AlertsFailures.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures",
             "KeyRegistryFunction.Arn": "arn:aws:lambda:custom", "APIHandler.Arn": "arn:aws:lambda:api"}
    common = {"CorsOrigins": ",".join(ORIGINS), "WebhookSecretParameter": f"{PARAMETERS}/webhook/secret"}
    stacks = {
        "bearer": Stack(packaged_template, {**common, "PrometheusUrl": bearer_proxy.url,
                                            "PrometheusBearerTokenParameter": f"{PARAMETERS}/prometheus/bearer-token"},
                        names),
        "sigv4": Stack(packaged_template, {**common, "PrometheusUrl": amp_proxy.url, "PrometheusSigV4Region": REGION,
                                           "PrometheusWorkspaceArn": f"arn:aws:aps:{REGION}:{ACCOUNT}:workspace/{WORKSPACE}"},
                       names),
    }
    # The stack's KeyRegistry custom resource, run as CloudFormation would on create.
    registry = stacks["bearer"].resolve(packaged_template["Resources"]["KeyRegistry"]["Properties"])
    key_registry.apply({"RequestType": "Create", "ResourceProperties": registry}, apigw, ssm)
    try:
        yield {"stacks": stacks, "admin": admin["value"], "read": dashboard["value"], "ssm": ssm,
               "streams": session.client("dynamodbstreams", endpoint_url=moto_server), "stream_arn": stream_arn,
               "table_arn": table_arn, "bearer_proxy": bearer_proxy, "amp_proxy": amp_proxy, "receiver": receiver,
               "calls": {}}
    finally:
        for server in (bearer_proxy, amp_proxy, receiver):
            server.close()
        patch.undo()
        bootstrap.reset()


@contextlib.contextmanager
def as_lambda(world, function: str, stack: str = "bearer", extra=None):
    """This process as the Lambda function: the template's environment (plus what Lambda itself
    sets: region, credentials; and the moto endpoint), a cold start, and its AWS calls recorded."""
    env = world["stacks"][stack].environment(function)
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith(("PROMETHEUS_", "API_KEYS", "WEBHOOK_", "CORS_", "STAGE", "TABLE_NAME", "ALERT_FROM",
                            "USAGE_STREAM", "AWS_LAMBDA", "INITIAL_BACKFILL", "MAX_BACKFILL", "COLLECT_")):
            patch.delenv(name)
    # The webhook receiver is on loopback, an internal address a deployed stage refuses unless
    # the operator allows its network (core/webhook_targets.py).
    for name, value in {**env, "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", **(extra or {})}.items():
        patch.setenv(name, value)
    bootstrap.reset()
    recorder = CallRecorder(world["table_arn"], world["stream_arn"])
    try:
        with recorder.recording():
            yield env
    finally:
        world["calls"].setdefault(function, []).extend(recorder.requests())
        patch.undo()
        bootstrap.reset()


def call_api(world, method, resource, key=None, origin=None, body=None, path_params=None):
    import app as application

    headers = {}
    if key:
        headers["x-api-key"] = key
    if origin:
        headers["origin"] = origin
    if body is not None:
        headers["content-type"] = "application/json"
    with as_lambda(world, "APIHandler") as env:
        event = proxy_event(method, resource, path_params, headers, json.dumps(body) if body is not None else None)
        return application.app(event, LambdaContext(env["AWS_LAMBDA_FUNCTION_NAME"]))


QUOTA = {"limit_bytes": 1000, "notify": ["ops@example.com"]}
WRITES = [("PUT", "/v1/services/{service}/quota", {"service": "payments"}, QUOTA),
          ("DELETE", "/v1/services/{service}/quota", {"service": "search"}, None),
          ("PUT", "/v1/consumers/{consumer}/quota", {"consumer": "acme"}, QUOTA),
          ("DELETE", "/v1/consumers/{consumer}/quota", {"consumer": "acme"}, None),
          ("PUT", "/v1/quota-rules", None, {"rules": []}),
          ("GET", "/v1/quota-audit", None, None)]


# -- the API: keys and roles from the SSM registry -----------------------------------------------
@pytest.mark.parametrize("method, resource, params, body", WRITES)
def test_the_read_key_gets_403_on_every_write_route(world, method, resource, params, body):
    response = call_api(world, method, resource, world["read"], body=body, path_params=params)
    assert response["statusCode"] == 403 and json_body(response)["error"]["code"] == "forbidden"


@pytest.mark.parametrize("method, resource, params, body", WRITES)
def test_no_key_gets_401_on_every_write_route(world, method, resource, params, body):
    response = call_api(world, method, resource, None, body=body, path_params=params)
    assert response["statusCode"] == 401


def test_an_unknown_key_gets_401(world):
    assert call_api(world, "GET", "/v1/services", "not-a-key-0123456789")["statusCode"] == 401


def test_the_read_key_reads(world):
    response = call_api(world, "GET", "/v1/services", world["read"])
    assert response["statusCode"] == 200 and "services" in json_body(response)


def test_the_admin_key_changes_quotas_and_rules_and_reads_the_audit(world):
    assert call_api(world, "PUT", "/v1/quota-rules", world["admin"], body={"rules": []})["statusCode"] == 200
    put = call_api(world, "PUT", "/v1/services/{service}/quota", world["admin"],
                   body={"limit_bytes": 5, "notify": ["x@example.com"]}, path_params={"service": "search"})
    assert put["statusCode"] == 200
    gone = call_api(world, "DELETE", "/v1/services/{service}/quota", world["admin"], path_params={"service": "search"})
    assert gone["statusCode"] == 204
    audit = json_body(call_api(world, "GET", "/v1/quota-audit", world["admin"]))["entries"]
    admin_name = f"key#{hashlib.sha256(world['admin'].encode()).hexdigest()[:8]}"
    assert {e["actor"] for e in audit} == {admin_name}


# -- CORS ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", ORIGINS)
def test_every_allowed_origin_gets_its_own_cors_answer_never_a_star(world, origin):
    response = call_api(world, "GET", "/v1/services", world["read"], origin=origin)
    assert response["headers"]["Access-Control-Allow-Origin"] == origin
    preflight = call_api(world, "OPTIONS", "/v1/services/{service}/quota", origin=origin,
                         path_params={"service": "payments"})
    assert preflight["statusCode"] == 204
    assert preflight["headers"]["Access-Control-Allow-Origin"] == origin
    assert "x-api-key" in preflight["headers"]["Access-Control-Allow-Headers"]
    assert "PUT" in preflight["headers"]["Access-Control-Allow-Methods"]


def test_other_origins_get_no_cors_header(world):
    for method in ("GET", "OPTIONS"):
        response = call_api(world, method, "/v1/services", world["read"], origin="https://evil.example")
        assert "Access-Control-Allow-Origin" not in response["headers"]
    refused = call_api(world, "GET", "/v1/services", None, origin=ORIGINS[0])
    assert refused["statusCode"] == 401 and refused["headers"]["Access-Control-Allow-Origin"] == ORIGINS[0]


# -- quiet in public ------------------------------------------------------------------------------
def test_health_names_no_table_region_or_endpoint(world):
    response = call_api(world, "GET", "/v1/health")
    text = response["body"]
    assert response["statusCode"] == 200 and json_body(response)["backends"] == {"stage": "prod"}
    assert TABLE not in text and REGION not in text and "127.0.0.1" not in text


# -- a stage with no keys refuses everything, and says why ----------------------------------------
def function_log(out: str) -> list:
    """The JSON log lines a function wrote on stdout (in Lambda, Powertools' Logger), EMF blobs aside."""
    records = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" not in record:
            records.append(record)
    return records


def test_with_an_empty_registry_everything_is_refused_and_the_log_says_why(world, capfd):
    ssm = world["ssm"]
    saved = {p["Name"]: p["Value"] for p in
             ssm.get_parameters_by_path(Path=f"{PARAMETERS}/api-keys", WithDecryption=True)["Parameters"]}
    for name in saved:
        ssm.delete_parameter(Name=name)
    try:
        capfd.readouterr()
        responses = [call_api(world, "GET", "/v1/services", key) for key in (world["admin"], world["read"], None)]
        assert [r["statusCode"] for r in responses] == [401, 401, 401]
        warnings = [r["message"] for r in function_log(capfd.readouterr().out) if r["level"] == "WARNING"]
        assert any(f"no API keys in SSM {PARAMETERS}/api-keys" in m for m in warnings), warnings
    finally:
        for name, value in saved.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


# -- the collector and the alerts function --------------------------------------------------------
def run_collector(world, stack):
    """One scheduled run from the start: the collector state is cleared first (test setup), so
    the run reads the whole history again (writes are idempotent)."""
    import app as application
    from chalicelib.core.models import CollectorState

    models.bind(TABLE, REGION, os.environ["AWS_ENDPOINT_URL"])
    CollectorState("STATE", "collector").delete()
    with as_lambda(world, "Collect", stack, TUNING) as env:
        return application.collect({"source": "aws.events", "detail-type": "Scheduled Event", "time": "",
                                    "resources": [], "region": REGION, "account": ACCOUNT, "id": "1",
                                    "version": "0", "detail": {}}, LambdaContext(env["AWS_LAMBDA_FUNCTION_NAME"]))


def test_the_collector_authenticates_with_the_bearer_token_from_ssm_and_writes_usage(world):
    from chalicelib.core.models import UsageBucket

    run_collector(world, "bearer")
    seen = world["bearer_proxy"].seen
    assert seen and all(headers.get("Authorization") == f"Bearer {BEARER}" for _, _, headers in seen)
    bytes_written = sum(int(b.egress) for b in UsageBucket.query("USAGE#payments", UsageBucket.sk.startswith("1m#")))
    assert bytes_written == 100 * (1800 // 15 - 1)


def test_the_collector_signs_its_queries_for_managed_prometheus(world):
    run_collector(world, "sigv4")
    seen = world["amp_proxy"].seen
    assert seen and all(headers["Authorization"].startswith("AWS4-HMAC-SHA256 ") and "/aps/aws4_request" in
                        headers["Authorization"] for _, _, headers in seen)
    assert all(path.startswith(f"/workspaces/{WORKSPACE}/api/v1/query") for _, path, _ in seen)
    world["calls"].setdefault("Collect", []).extend(
        IamRequest("aps:QueryMetrics", f"arn:aws:aps:{REGION}:{ACCOUNT}:workspace/{WORKSPACE}") for _ in seen)


AMP_ACTIONS = {"/api/v1/query": "aps:QueryMetrics", "/api/v1/series": "aps:GetSeries",
               "/api/v1/label/": "aps:GetLabels"}


def amp_action(path: str) -> str:
    """The IAM action Amazon Managed Prometheus authorises a Prometheus API path with."""
    api = path.split(f"/workspaces/{WORKSPACE}", 1)[1]
    return next(action for prefix, action in AMP_ACTIONS.items() if api.startswith(prefix))


def test_the_shard_worker_runs_the_catch_all_with_signed_queries_and_label_values(world):
    """A sharded stack: the worker (its own function, role and log group) runs shard 0, which
    also asks Prometheus for the service names in the window (label values)."""
    import app as application
    from chalicelib.core.models import CollectorState

    models.bind(TABLE, REGION, os.environ["AWS_ENDPOINT_URL"])
    CollectorState("STATE", "collector").delete()
    before = len(world["amp_proxy"].seen)
    with as_lambda(world, "CollectShard", "sigv4", {**TUNING, "SHARD_COUNT": "2"}) as env:
        report = application.collect_shard({"shard": 0}, LambdaContext(env["AWS_LAMBDA_FUNCTION_NAME"]))
    assert report["status"] == "ok", report
    seen = world["amp_proxy"].seen[before:]
    actions = [amp_action(path) for _, path, _ in seen]
    assert {"aps:QueryMetrics", "aps:GetLabels"} <= set(actions)
    world["calls"].setdefault("CollectShard", []).extend(
        IamRequest(action, f"arn:aws:aps:{REGION}:{ACCOUNT}:workspace/{WORKSPACE}") for action in actions)
    # Lambda writes the function's logs to the group named after it, with the function's role.
    world["calls"]["CollectShard"].append(IamRequest(
        "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{env['AWS_LAMBDA_FUNCTION_NAME']}"
                             ":log-stream:2026/12/04/[$LATEST]0"))


def test_alerts_email_and_sign_the_webhook_with_the_secret_from_ssm(world):
    import app as application
    from localrun.streams import StreamPoller

    quota = {**QUOTA, "webhook_url": world["receiver"].url}
    assert call_api(world, "PUT", "/v1/services/{service}/quota", world["admin"], body=quota,
                    path_params={"service": "payments"})["statusCode"] == 200
    run_collector(world, "bearer")
    # Lambda's event-source mapping reads the stream with the function's role: record it as the function's.
    with as_lambda(world, "Alerts") as env:
        poller = StreamPoller(world["streams"], world["stream_arn"], application.alerts, sleep=lambda s: None,
                              context=LambdaContext(env["AWS_LAMBDA_FUNCTION_NAME"]))
        while poller.poll_once():
            pass
    # What still fails after the retries, the mapping sends to the failure queue with the same role.
    queue = world["stacks"]["bearer"].resolve({"Fn::GetAtt": ["AlertsFailures", "Arn"]})
    world["calls"]["Alerts"].append(IamRequest("sqs:SendMessage", queue))
    (headers, body), = world["receiver"].received
    expected = hmac.new(WEBHOOK_SECRET.encode(), headers["X-Bandwidth-Meter-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Bandwidth-Meter-Signature"] == f"sha256={expected}"
    assert any(r.action == "ses:SendRawEmail" or r.action == "ses:SendEmail" for r in world["calls"]["Alerts"])


def test_the_collector_finishes_a_push_batch_whose_request_died(world):
    """A push recorded by an API request that died, finished by the scheduled run with the
    collector's own role (its calls are checked below)."""
    from chalicelib.core import events as ev
    from chalicelib.core.models import PUSH_PENDING_PK, PushBatch
    from chalicelib.core.pushed import STALE_SECONDS, PushedUsage

    models.bind(TABLE, REGION, os.environ["AWS_ENDPOINT_URL"])
    died_at = time.time() - STALE_SECONDS - 60
    raw = [{"specversion": "1.0", "id": f"e{i}", "source": "/cdn-logs", "type": ev.EVENT_TYPE,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE + 60)),
            "data": {"service": "cdn", "direction": "egress", "bytes": 1000 + i}} for i in range(3)]
    pushed = PushedUsage()
    pushed._record(f"{int(died_at):011d}-died", [ev.judge(r, died_at, 35) for r in raw], died_at)  # then it died
    run_collector(world, "bearer")
    assert list(PushBatch.query(PUSH_PENDING_PK)) == []
    assert sum(b.egress for b in pushed.buckets("cdn", "1m", BASE, BASE + 120)) == 3003


# -- least privilege: each function's calls against its own role ---------------------------------
ROLES = {"APIHandler": "ApiHandlerRole", "Collect": "CollectRole", "Alerts": "AlertsRole",
         "CollectShard": "CollectShardRole"}


@pytest.mark.parametrize("function", sorted(ROLES))
def test_every_call_a_function_made_is_allowed_by_its_role(world, function):
    made = world["calls"].get(function)
    assert made, f"no calls recorded for {function}: run the whole module"
    statements = world["stacks"]["sigv4"].statements(ROLES[function])
    refused = sorted({r for r in made if not policy_allows(statements, r)}, key=str)
    assert not refused, refused


def test_the_calls_cover_what_each_function_is_for(world):
    made = {f: {(r.action, k) for r in calls for k in r.leading_keys or ("",)} for f, calls in world["calls"].items()}
    assert {("dynamodb:BatchWriteItem", "USAGE#payments"), ("aps:QueryMetrics", "")} <= made["Collect"]
    # ...and finishes a crashed push: claims, its groups (one transaction each), the record's deletion
    partitions = {(action, key.split("#", 1)[0]) for action, key in made["Collect"]}
    assert {("dynamodb:PutItem", "EVENT"), ("dynamodb:PutItem", "PUSHED_USAGE"), ("dynamodb:PutItem", "PUSHED"),
            ("dynamodb:DeleteItem", "PUSH_PENDING")} <= partitions
    assert {("dynamodb:PutItem", "QUOTA"), ("dynamodb:PutItem", "AUDIT"), ("ssm:GetParametersByPath", "")} <= made["APIHandler"]
    assert ("dynamodb:PutItem", "ALERT#payments") in made["Alerts"]
    assert ("sqs:SendMessage", "") in made["Alerts"]  # the stream mapping's failure destination


TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"


@pytest.mark.parametrize("role, request_", [
    ("ApiHandlerRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("USAGE#payments",))),
    ("ApiHandlerRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("ALERT#payments",))),
    ("ApiHandlerRole", IamRequest("dynamodb:BatchWriteItem", TABLE_ARN, ("QUOTA",))),
    ("ApiHandlerRole", IamRequest("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/alerts@example.com")),
    ("ApiHandlerRole", IamRequest("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETERS}/webhook/secret")),
    ("AlertsRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("QUOTA",))),
    ("AlertsRole", IamRequest("dynamodb:UpdateItem", TABLE_ARN, ("SERVICES",))),
    ("AlertsRole", IamRequest("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETERS}/prometheus/bearer-token")),
    ("CollectRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("QUOTA",))),
    ("CollectRole", IamRequest("dynamodb:BatchWriteItem", TABLE_ARN, ("USAGE#a", "AUDIT"))),
    # The collector sends no email at all: block notices go out from the alerts function.
    ("CollectRole", IamRequest("ses:SendRawEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/someone-else@example.com")),
    ("CollectRole", IamRequest("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/alerts@example.com")),
    ("CollectRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("ENFORCE#payments",))),
    ("CollectRole", IamRequest("dynamodb:DeleteItem", TABLE_ARN, ("USAGE#a",))),
    # Finishing a crashed push deletes its record, and nothing else; it writes no record nor import.
    ("CollectRole", IamRequest("dynamodb:DeleteItem", TABLE_ARN, ("EVENT#ab",))),
    ("CollectRole", IamRequest("dynamodb:DeleteItem", TABLE_ARN, ("PUSHED_USAGE#cdn",))),
    ("CollectRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("PUSH_PENDING",))),
    ("CollectRole", IamRequest("dynamodb:PutItem", TABLE_ARN, ("IMPORT#abc",))),
    ("CollectShardRole", IamRequest("dynamodb:DeleteItem", TABLE_ARN, ("QUOTA",))),
    ("CollectRole", IamRequest("ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETERS}/api-keys")),
    ("CollectRole", IamRequest("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/other-app/secret")),
    ("ApiHandlerRole", IamRequest("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures")),
    ("CollectRole", IamRequest("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures")),
    ("AlertsRole", IamRequest("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:other-queue")),
])
def test_roles_refuse_what_their_function_must_not_do(world, role, request_):
    assert not policy_allows(world["stacks"]["sigv4"].statements(role), request_)


def test_without_sigv4_the_collector_has_no_managed_prometheus_permission(world):
    statements = world["stacks"]["bearer"].statements("CollectRole")
    assert not any("aps:QueryMetrics" in s["Action"] for s in statements)


def test_each_role_logs_only_to_its_own_functions_log_group(world):
    stack = world["stacks"]["sigv4"]
    for function, role in ROLES.items():
        name = stack.resolve(stack.resource(function)["Properties"]["FunctionName"])
        own = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{name}:log-stream:x"
        statements = stack.statements(role)
        assert policy_allows(statements, IamRequest("logs:PutLogEvents", own))
        for other in ROLES:
            if other != function:
                other_name = stack.resolve(stack.resource(other)["Properties"]["FunctionName"])
                assert not policy_allows(statements, IamRequest(
                    "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{other_name}:log-stream:x"))
