"""The webhook adapter against a receiver on loopback that checks the signature."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.notify.webhook import NotifyError, WebhookSender


@pytest.fixture
def receiver():
    got, answers = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(answers.pop(0) if answers else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", got, answers
    httpd.shutdown()


def test_the_receiver_can_verify_the_signature(receiver):
    url, got, _ = receiver
    WebhookSender("s3cret", clock=lambda: 1_800_000_000).send(url, {"service": "pay", "threshold": 90})
    headers, body = got[0]
    assert json.loads(body) == {"service": "pay", "threshold": 90}
    assert headers["X-Bandwidth-Meter-Timestamp"] == "1800000000"
    mac = hmac.new(b"s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Bandwidth-Meter-Signature"], f"sha256={mac}")


def test_a_non_2xx_answer_or_no_receiver_is_a_notify_error(receiver):
    url, _, answers = receiver
    answers.append(500)
    with pytest.raises(NotifyError, match="HTTP 500"):
        WebhookSender("s").send(url, {})
    with pytest.raises(NotifyError, match="unreachable"):
        WebhookSender("s", timeout=0.5).send("http://127.0.0.1:9/hook", {})
