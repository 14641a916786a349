"""Safe by default: what only a local dev run may do, secrets named not held, the SSM key
registry (cached, refreshed, failing closed), and text shown in public stripped of credentials."""
import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from chalicelib.api.access import AccessGuard
from chalicelib.api.status import collector_status
from chalicelib.core.redact import redact
from chalicelib.core.secrets import ParameterKeys, ParameterStore, SecretsError, key_entry, resolve
from chalicelib.core.settings import ConfigError, from_env
from tests.conftest import BASE_ENV

IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "bandwidth-meter-dev"}
PATH = "/bandwidth-meter/prod/api-keys"
KEY = "an-admin-key-0123456789"


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def settings(**env):
    return from_env({**BASE_ENV, **env})


# -- where the code runs ---------------------------------------------------------------------------
def test_the_dev_stage_is_open_only_when_run_locally():
    assert AccessGuard.from_settings(settings(STAGE="dev")).open is True
    deployed = AccessGuard.from_settings(settings(STAGE="dev", **IN_LAMBDA))
    assert deployed.open is False
    assert deployed.check("PUT", "/v1/quota-rules", None)[1].status == 401


def test_a_deployed_stage_without_keys_logs_why_it_refuses(caplog):
    with caplog.at_level(logging.WARNING, logger="chalicelib.api.access"):
        guard = AccessGuard.from_settings(settings(STAGE="dev", **IN_LAMBDA))
    assert "CLOSED: no API keys in API_KEYS for stage 'dev' (in AWS)" in caplog.text
    assert "accepts no requests" in guard.check("GET", "/v1/services", "k")[1].message


def test_cors_star_is_refused_when_deployed_even_in_the_dev_stage():
    assert settings(STAGE="dev").cors_origins == ("*",)
    assert settings(STAGE="dev", **IN_LAMBDA).cors_origins == ()
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        settings(STAGE="dev", CORS_ORIGINS="*", **IN_LAMBDA)


@pytest.mark.parametrize("name, replacement", [
    ("API_KEYS", "API_KEYS_PARAMETER_PATH"), ("PROMETHEUS_PASSWORD", "PROMETHEUS_PASSWORD_PARAMETER"),
    ("PROMETHEUS_BEARER_TOKEN", "PROMETHEUS_BEARER_TOKEN_PARAMETER"), ("WEBHOOK_SECRET", "WEBHOOK_SECRET_PARAMETER")])
def test_a_secret_in_a_deployed_functions_environment_fails_fast_naming_its_replacement(name, replacement):
    value = "k:admin" if name == "API_KEYS" else "s3cret"
    assert settings(**{name: value})  # local runs keep the plain variables
    with pytest.raises(ConfigError, match=f"{name} is set.*{replacement}"):
        settings(**{name: value}, **IN_LAMBDA)


def test_key_digests_without_keys_are_still_accepted_in_lambda():
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    assert settings(API_KEYS=f"sha256:{digest}:admin", STAGE="prod", **IN_LAMBDA).api_keys == ((digest, "admin"),)


def test_parameter_names_must_be_absolute():
    assert settings(WEBHOOK_SECRET_PARAMETER="/bm/prod/webhook/secret").webhook_secret_parameter == "/bm/prod/webhook/secret"
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET_PARAMETER"):
        settings(WEBHOOK_SECRET_PARAMETER="bm/webhook")


def test_health_names_backends_only_in_the_local_dev_stage():
    assert "table" in settings(STAGE="dev").public_summary()
    for s in (settings(STAGE="prod", CORS_ORIGINS="https://a.example"), settings(STAGE="dev", **IN_LAMBDA)):
        assert s.public_summary() == {"stage": s.stage}


# -- Parameter Store --------------------------------------------------------------------------------
@pytest.fixture
def ssm(isolated):
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def put_key(ssm, name, key, role):
    ssm.put_parameter(Name=f"{PATH}/{name}", Value=key_entry(role, hashlib.sha256(key.encode()).hexdigest(), "id1"),
                      Type="SecureString", Overwrite=True)


def test_the_registry_is_read_once_and_refreshed_after_its_max_age(ssm):
    clock = FakeClock()
    keys = ParameterKeys(ParameterStore(ssm, max_age=300, clock=clock), PATH)
    put_key(ssm, "ops", KEY, "admin")
    guard = AccessGuard(keys, "prod", local=False)
    assert guard.check("PUT", "/v1/quota-rules", KEY)[1] is None
    ssm.delete_parameter(Name=f"{PATH}/ops")  # revoked
    clock.now += 299
    assert guard.check("PUT", "/v1/quota-rules", KEY)[1] is None  # still cached
    clock.now += 1
    assert guard.check("PUT", "/v1/quota-rules", KEY)[1].status == 401


def test_a_key_added_after_the_last_read_works_within_half_a_minute(ssm):
    clock = FakeClock()
    keys = ParameterKeys(ParameterStore(ssm, max_age=300, clock=clock), PATH)
    guard = AccessGuard(keys, "prod", local=False)
    put_key(ssm, "ops", KEY, "admin")
    assert guard.check("GET", "/v1/services", "someone-else-0123456789")[1].status == 401  # registry read now
    put_key(ssm, "new", "a-new-key-0123456789", "read")
    clock.now += 29
    assert guard.check("GET", "/v1/services", "a-new-key-0123456789")[1].status == 401
    clock.now += 1
    assert guard.check("GET", "/v1/services", "a-new-key-0123456789")[1] is None


def test_a_failed_refresh_keeps_the_keys_it_had(ssm, caplog):
    clock = FakeClock()
    put_key(ssm, "ops", KEY, "admin")
    store = ParameterStore(ssm, max_age=10, clock=clock)
    keys = ParameterKeys(store, PATH)
    assert list(keys.current().values()) == ["admin"]
    store.client = SimpleNamespace(get_parameters_by_path=lambda **kw: (_ for _ in ()).throw(ConnectionError("down")))
    clock.now += 11
    with caplog.at_level(logging.WARNING):
        assert list(keys.current().values()) == ["admin"]
    assert "refreshing" in caplog.text


def test_a_registry_never_read_answers_503_not_open(caplog):
    broken = SimpleNamespace(get_parameters_by_path=lambda **kw: (_ for _ in ()).throw(ConnectionError("down")))
    guard = AccessGuard(ParameterKeys(ParameterStore(broken), PATH), "dev", local=False)
    with caplog.at_level(logging.ERROR):
        denial = guard.check("GET", "/v1/services", KEY)[1]
    assert (denial.status, denial.code) == (503, "backend_unavailable")
    assert "cannot be read" in caplog.text


def test_malformed_registry_entries_are_ignored_and_logged(ssm, caplog):
    put_key(ssm, "good", KEY, "read")
    ssm.put_parameter(Name=f"{PATH}/bad", Value="not json", Type="SecureString")
    ssm.put_parameter(Name=f"{PATH}/root", Value=json.dumps({"role": "root", "sha256": "0" * 64}), Type="SecureString")
    with caplog.at_level(logging.ERROR):
        keys = ParameterKeys(ParameterStore(ssm), PATH).current()
    assert list(keys.values()) == ["read"]
    assert "'bad'" in caplog.text and "'root'" in caplog.text


def test_secrets_are_resolved_from_their_parameters_and_only_those_asked_for(ssm):
    ssm.put_parameter(Name="/bm/prod/prometheus/token", Value="tok-123", Type="SecureString")
    s = settings(PROMETHEUS_BEARER_TOKEN_PARAMETER="/bm/prod/prometheus/token",
                 WEBHOOK_SECRET_PARAMETER="/bm/prod/webhook/missing")
    resolved = resolve(s, lambda: ParameterStore(ssm), "prometheus_bearer_token")
    assert resolved.prometheus_bearer_token == "tok-123" and resolved.webhook_secret is None
    with pytest.raises(SecretsError, match="/bm/prod/webhook/missing"):
        resolve(s, lambda: ParameterStore(ssm), "webhook_secret")


def test_nothing_is_fetched_when_no_parameter_is_named():
    s = settings(PROMETHEUS_BEARER_TOKEN="local-token")
    assert resolve(s, lambda: pytest.fail("no store needed"), "prometheus_bearer_token") is s


# -- credentials out of public text -------------------------------------------------------------------
@pytest.mark.parametrize("text, secret", [
    ("Prometheus at https://bob:hunter2@prom.example.com:9090 unreachable", "hunter2"),
    ("Prometheus at https://bob:hunter2@prom.example.com:9090 unreachable", "bob"),
    ("Max retries exceeded with url: /api/v1/query?token=abc123def", "abc123def"),
    ("GET https://prom.example.com/api/v1/query?X-Amz-Signature=feedbeef&q=1 failed", "feedbeef"),
    ("refused: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("config: password=s3cr3t, api_key: 'k-123456'", "s3cr3t"),
    ("config: password=s3cr3t, api_key: 'k-123456'", "k-123456"),
])
def test_redact_removes_credentials(text, secret):
    assert secret not in redact(text)


def test_redact_keeps_what_failed_and_where():
    text = "Prometheus at http://prom.internal:9090/api/v1/query unreachable: connection refused"
    assert redact(text) == text
    assert redact("https://u:p@prom.example.com/x") == "https://[redacted]@prom.example.com/x"


def test_collector_status_never_shows_credentials_in_last_error():
    from chalicelib.core.models import STATE_KEY, CollectorState

    state = CollectorState(*STATE_KEY, last_error="Prometheus at https://bob:hunter2@prom.example.com unreachable")
    shown = collector_status(state, SimpleNamespace(collect_lag_seconds=60), now=0)["last_error"]
    assert "hunter2" not in shown and "prom.example.com" in shown


# -- the stack's key registry resource ---------------------------------------------------------------
class CloudFormationStub:
    """Where a custom resource PUTs its answer (CloudFormation's pre-signed S3 URL)."""

    def __init__(self):
        self.answers = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                stub.answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cfn():
    stub = CloudFormationStub()
    yield stub
    stub.close()


def custom_event(kind, cfn, keys, old_keys=None):
    event = {"RequestType": kind, "ResponseURL": cfn.url, "StackId": "stack", "RequestId": "r1",
             "LogicalResourceId": "KeyRegistry", "ResourceProperties": {"Path": PATH, "Keys": keys}}
    if old_keys is not None:
        event["OldResourceProperties"] = {"Path": PATH, "Keys": old_keys}
    return event


def test_key_registry_records_digests_updates_and_deletes_then_answers_cloudformation(isolated, cfn):
    from deploy import key_registry

    with mock_aws():
        apigw, ssm = boto3.client("apigateway", region_name="us-east-1"), boto3.client("ssm", region_name="us-east-1")
        admin, dash = (apigw.create_api_key(name=n, enabled=True) for n in ("admin", "dashboard"))
        keys = [{"Name": "admin", "Role": "admin", "ApiKeyId": admin["id"]},
                {"Name": "dashboard", "Role": "read", "ApiKeyId": dash["id"]}]
        key_registry.handler(custom_event("Create", cfn, keys), None, apigw, ssm)
        stored = ParameterKeys(ParameterStore(ssm, max_age=0), PATH).current()
        assert stored == {hashlib.sha256(admin["value"].encode()).hexdigest(): "admin",
                          hashlib.sha256(dash["value"].encode()).hexdigest(): "read"}
        assert ssm.get_parameter(Name=f"{PATH}/admin")["Parameter"]["Type"] == "SecureString"
        key_registry.handler(custom_event("Update", cfn, keys[:1], keys), None, apigw, ssm)
        assert list(ParameterKeys(ParameterStore(ssm, max_age=0), PATH).current().values()) == ["admin"]
        key_registry.handler(custom_event("Delete", cfn, keys[:1]), None, apigw, ssm)
        assert ParameterKeys(ParameterStore(ssm, max_age=0), PATH).current() == {}
        key_registry.handler(custom_event("Create", cfn, [{"Name": "x", "Role": "read", "ApiKeyId": "nope"}]),
                             None, apigw, ssm)
    assert [a["Status"] for a in cfn.answers] == ["SUCCESS", "SUCCESS", "SUCCESS", "FAILED"]
    assert all(a["PhysicalResourceId"] == "KeyRegistry" for a in cfn.answers)


def test_the_inlined_key_registry_fits_cloudformations_limit():
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("make_template", pathlib.Path(__file__).parents[2] / "deploy/make_template.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module._key_registry_source()) <= 4096


def test_an_unreachable_prometheus_error_names_no_credentials():
    from chalicelib.collect.prometheus import PrometheusClient
    from chalicelib.core.errors import PrometheusError
    from localrun.prometheus import free_port

    client = PrometheusClient(f"http://bob:hunter2@127.0.0.1:{free_port()}", timeout=1, retries=0)
    with pytest.raises(PrometheusError) as raised:
        client.query("up", at=0)
    assert "hunter2" not in str(raised.value) and "127.0.0.1" in str(raised.value)
