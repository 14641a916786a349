"""The webhook adapter against receivers on loopback: the signature, and where it may not send.

Loopback is an internal address, so the receivers here are reached with the dev stage's policy,
or in a strict stage only because the test's operator allows 127.0.0.0/8 explicitly."""
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from chalicelib.core.webhook_targets import DEV, STRICT, WebhookTargetPolicy
from chalicelib.notify.webhook import NotifyError, WebhookSender

LOOPBACK_ALLOWED = WebhookTargetPolicy(strict=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


def start_receiver(tls_context=None):
    got, answers = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            status, location = answers.pop(0) if answers else (204, None)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls_context is not None:
        httpd.socket = tls_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, got, answers


@pytest.fixture
def receiver():
    httpd, got, answers = start_receiver()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", got, answers
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tls_receiver(tmp_path):
    """An https receiver whose certificate names hooks.example (a name only our resolver knows)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    httpd, got, answers = start_receiver(context)
    yield httpd.server_address[1], str(ca_file), got, answers
    httpd.shutdown()
    httpd.server_close()


def test_the_receiver_can_verify_the_signature(receiver):
    url, got, _ = receiver
    WebhookSender("s3cret", clock=lambda: 1_800_000_000, policy=DEV).send(url, {"service": "pay", "threshold": 90})
    headers, body = got[0]
    assert json.loads(body) == {"service": "pay", "threshold": 90}
    assert headers["X-Bandwidth-Meter-Timestamp"] == "1800000000"
    mac = hmac.new(b"s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Bandwidth-Meter-Signature"], f"sha256={mac}")


def test_a_non_2xx_answer_or_no_receiver_is_a_notify_error_without_the_url(receiver):
    url, _, answers = receiver
    answers.append((500, None))
    with pytest.raises(NotifyError, match="HTTP 500") as failed:
        WebhookSender("s", policy=DEV).send(url, {})
    assert "127.0.0.1" not in str(failed.value)
    with pytest.raises(NotifyError, match="unreachable") as unreachable:
        WebhookSender("s", timeout=0.5, policy=DEV).send("http://127.0.0.1:9/hook", {})
    assert "127.0.0.1" not in str(unreachable.value) and "/hook" not in str(unreachable.value)


def test_a_redirect_is_not_followed(receiver):
    url, got, answers = receiver
    answers.append((307, url.replace("/hook", "/elsewhere")))
    with pytest.raises(NotifyError, match="redirect"):
        WebhookSender("s", policy=DEV).send(url, {})
    assert len(got) == 1  # the redirect's target was never asked


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://169.254.169.254/latest/meta-data/",
                                 "https://2130706433/hook", "https://0x7f000001/hook", "https://10.1.2.3/hook",
                                 "https://[::ffff:169.254.169.254]/hook", "https://[fe80::1]/hook",
                                 "https://localhost/hook", "http://hooks.example.com/hook"])
def test_a_strict_stage_refuses_internal_or_plain_targets_before_connecting(url):
    asked = []
    with pytest.raises(NotifyError, match="refused"):
        WebhookSender("s", policy=STRICT, resolver=lambda host, port: asked.append(host) or ["93.184.215.14"]
                      ).send(url, {})
    assert asked == []


@pytest.mark.parametrize("internal", ["169.254.169.254", "127.0.0.1", "10.0.0.7", "::1", "fd00::1", "0.0.0.0"])
def test_a_strict_stage_refuses_a_name_that_resolves_to_an_internal_address(internal):
    with pytest.raises(NotifyError, match="internal address"):
        WebhookSender("s", policy=STRICT,
                      resolver=lambda host, port: ["93.184.215.14", internal]).send("https://hooks.example/h", {})


def test_a_strict_stage_posts_to_the_checked_address_with_the_name_for_tls(tls_receiver):
    """The resolver is asked once; the request goes to that address, and the certificate is
    checked against the URL's name (no second lookup a rebinding DNS could answer differently)."""
    port, ca_file, got, _ = tls_receiver
    lookups = []

    def resolver(host, p):
        lookups.append((host, p))
        return ["127.0.0.1"]

    sender = WebhookSender("s", policy=LOOPBACK_ALLOWED, resolver=resolver, verify=ca_file)
    sender.send(f"https://hooks.example:{port}/hook?team=ops", {"service": "pay"})
    (headers, body), = got
    assert lookups == [("hooks.example", port)]
    assert headers["Host"] == f"hooks.example:{port}" and json.loads(body) == {"service": "pay"}


def test_a_certificate_for_another_name_is_refused_even_at_an_allowed_address(tls_receiver):
    port, ca_file, got, _ = tls_receiver
    sender = WebhookSender("s", policy=LOOPBACK_ALLOWED, resolver=lambda h, p: ["127.0.0.1"], verify=ca_file)
    with pytest.raises(NotifyError, match="unreachable"):
        sender.send(f"https://other.example:{port}/hook", {})
    assert got == []
