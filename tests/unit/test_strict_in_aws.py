"""Deployed stacks are strict whatever the stage is called: every dev-only relaxation
depends on not running in AWS; link-local and instance-metadata addresses are never a webhook
target, even locally; Kong's Admin API is not reached over plain HTTP from AWS unless allowed;
recipient addresses never reach a log line."""
import ipaddress
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from chalicelib import bootstrap
from chalicelib.api.http import cors_config
from chalicelib.core.errors import MailError
from chalicelib.core.settings import ConfigError, from_env, running_in_lambda
from chalicelib.core.webhook_targets import DEV, STRICT, UnsafeWebhookTarget, WebhookTargetPolicy
from chalicelib.notify.mailer import SesMailer
from chalicelib.notify.webhook import NotifyError, WebhookSender
from tests.conftest import BASE_ENV
from tests.unit.test_alerts import NOW, GB, usage

IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "bandwidth-meter-prod-alerts"}


def settings(**env):
    return from_env({**BASE_ENV, **env})


# -- where the code runs decides, never STAGE ------------------------------------------------------
def test_a_deployed_function_without_stage_is_strict_about_webhooks():
    deployed = settings(**IN_LAMBDA)  # STAGE unset: it defaults to dev
    assert deployed.stage == "dev" and deployed.in_lambda and not deployed.local_dev
    policy = WebhookTargetPolicy.from_settings(deployed)
    assert policy.strict
    for url in ("http://169.254.169.254/latest/meta-data/", "https://127.0.0.1/", "https://10.0.0.5/",
                "http://hooks.example.com/"):
        with pytest.raises(UnsafeWebhookTarget):
            policy.check_url(url)
    policy.check_url("https://hooks.example.com/bw")


@pytest.mark.parametrize("stage", ["dev", "prod", "staging", "test"])
def test_every_stage_in_aws_is_strict_and_only_local_dev_is_relaxed(stage):
    assert WebhookTargetPolicy.from_settings(settings(STAGE=stage, **IN_LAMBDA)).strict
    assert WebhookTargetPolicy.from_settings(settings(STAGE=stage)).strict is (stage != "dev")


def test_running_in_lambda_is_the_lambda_variable():
    assert running_in_lambda({"AWS_LAMBDA_FUNCTION_NAME": "f"}) and not running_in_lambda({})
    assert not running_in_lambda({"AWS_LAMBDA_FUNCTION_NAME": "  "})


def test_cors_preflights_allow_any_origin_only_in_a_local_dev_run():
    assert cors_config({"STAGE": "dev"}).allow_origin == "*"
    assert cors_config({**IN_LAMBDA}).allow_origin == "null"  # STAGE unset in Lambda: not '*'
    assert cors_config({"STAGE": "dev", **IN_LAMBDA}).allow_origin == "null"
    assert cors_config({"CORS_ORIGINS": "https://a.example", **IN_LAMBDA}).allow_origin == "https://a.example"


# -- never a target, not even locally ---------------------------------------------------------------
NEVER = [
    "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/v2/credentials", "http://169.254.1.1/",
    "http://[fe80::1]/", "http://[fd00:ec2::254]/", "http://100.100.100.200/latest/meta-data/",
    "http://192.0.0.192/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./", "http://instance-data/", "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::]/", "http://2852039166/", "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/", "http://169.254.43518/",
]


@pytest.mark.parametrize("url", NEVER)
def test_link_local_and_metadata_targets_are_refused_by_every_policy(url):
    allowing = WebhookTargetPolicy(strict=True, allowed_networks=(
        ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10"),
        ipaddress.ip_network("fd00::/8"), ipaddress.ip_network("fe80::/10")))
    for policy in (DEV, STRICT, allowing):
        with pytest.raises(UnsafeWebhookTarget, match="link-local or instance-metadata|instance-metadata service"):
            policy.check_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "http://10.1.2.3/",
                                 "http://192.168.1.5/", "http://[::1]:9/", "http://[fd00::5]/", "http://100.64.0.1/"])
def test_loopback_and_private_networks_stay_reachable_locally(url):
    DEV.check_url(url)
    with pytest.raises(UnsafeWebhookTarget):
        STRICT.check_url(url)


@pytest.mark.parametrize("resolved", ["169.254.169.254", "fe80::1%eth0", "fd00:ec2::254", "100.100.100.200",
                                      "::ffff:169.254.169.254"])
def test_a_name_resolving_to_a_metadata_address_is_refused_locally_too(resolved):
    asked = []

    class NoSession:
        def post(self, *args, **kwargs):
            raise AssertionError("nothing may be sent")

        def mount(self, *args):
            pass

    sender = WebhookSender("s", session=NoSession(), policy=DEV,
                           resolver=lambda host, port: asked.append(host) or ["127.0.0.1", resolved])
    with pytest.raises(NotifyError, match="internal address"):
        sender.send("http://hooks.dev.example:8080/hook", {})
    assert asked == ["hooks.dev.example"]


class Recorder(BaseHTTPRequestHandler):
    """Answers 302 to ``location`` when set, 200 otherwise; records each request's path."""

    def do_POST(self):
        self.server.seen.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    started = []

    def start(location=None):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        httpd.seen, httpd.location = [], location
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd

    yield start
    for httpd in started:
        httpd.shutdown()


def test_a_local_receiver_works_and_a_redirect_is_never_followed_over_real_http(http_server):
    inner = http_server()
    DEV_SENDER = WebhookSender("s", policy=DEV)
    DEV_SENDER.send(f"http://localhost:{inner.server_address[1]}/hook", {"n": 1})  # a name, resolved and pinned
    assert inner.seen == ["/hook"]
    redirecting = http_server(location=f"http://127.0.0.1:{inner.server_address[1]}/latest/meta-data/")
    with pytest.raises(NotifyError, match="redirect"):
        DEV_SENDER.send(f"http://127.0.0.1:{redirecting.server_address[1]}/hook", {"n": 2})
    assert redirecting.seen == ["/hook"] and inner.seen == ["/hook"]


# -- Kong's Admin API over plain HTTP ------------------------------------------------------------
def test_an_http_kong_admin_url_is_refused_in_aws_unless_allowed():
    with pytest.raises(ConfigError, match="KONG_ADMIN_URL.*KONG_ADMIN_ALLOW_HTTP"):
        settings(KONG_ADMIN_URL="http://kong-admin.internal:8001", **IN_LAMBDA)
    allowed = settings(KONG_ADMIN_URL="http://kong-admin.internal:8001", KONG_ADMIN_ALLOW_HTTP="true", **IN_LAMBDA)
    assert allowed.kong_admin_url == "http://kong-admin.internal:8001" and allowed.kong_admin_allow_http
    assert settings(KONG_ADMIN_URL="https://kong-admin.internal:8444", **IN_LAMBDA).kong_admin_url
    assert settings(KONG_ADMIN_URL="http://127.0.0.1:8001").kong_admin_url == "http://127.0.0.1:8001"  # locally
    with pytest.raises(ConfigError, match="KONG_ADMIN_ALLOW_HTTP"):
        settings(KONG_ADMIN_URL="http://k:8001", KONG_ADMIN_ALLOW_HTTP="maybe", **IN_LAMBDA)


# -- no recipient address in logs -----------------------------------------------------------------
class RefusingSes:
    def send_email(self, **kwargs):
        to = ", ".join(kwargs["Destination"]["ToAddresses"])
        raise ClientError({"Error": {"Code": "MessageRejected",
                                     "Message": f"Email address is not verified: {to}"}}, "SendEmail")


def test_a_refused_email_names_no_recipient_in_its_error_or_any_log_line(aws, caplog):
    deps = bootstrap.override(aws, mailer=SesMailer(RefusingSes(), "alerts@example.com"))
    deps.quotas.put("pay", {"limit_bytes": 100 * GB, "notify": ["ops@example.com", "jane.doe+bw@corp.example.org"]})
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    item = usage("pay", 85 * GB)
    with pytest.raises(MailError) as refused:
        deps.alert_processor.evaluate("pay", NOW, item)
    assert "2 recipient(s)" in str(refused.value) and "[address]" in str(refused.value)
    record = type("Record", (), {"sequence_number": "1", "keys": {"pk": {"S": "SERVICES"}, "sk": {"S": "pay"}},
                                 "new_image": item.serialize() if hasattr(item, "serialize") else None})()
    deps.alert_processor.handle_batch([record], NOW)  # the stream path: log.exception with the traceback
    deps.alert_processor.sweep(NOW + 600)
    ours = [r for r in caplog.records if r.name.startswith("chalicelib")]
    logged = "\n".join(logging.Formatter("%(message)s %(exc_text)s").format(r) + str(r.__dict__) for r in ours)
    assert any(r.levelno >= logging.WARNING for r in ours), "the failure is logged"
    for address in ("ops@example.com", "jane.doe+bw@corp.example.org", "corp.example.org"):
        assert address not in logged
    # The alert keeps its recipients (the API shows them to read keys), not in its error text.
    from chalicelib.core.models import Alert

    errors = [a.error for a in Alert.query("ALERT#pay") if a.status == "failed"]
    assert errors and all("[address]" in e and "example" not in e for e in errors)
