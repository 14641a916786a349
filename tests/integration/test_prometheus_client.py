"""The Prometheus adapter against a scripted HTTP server on loopback: auth, retries, bad answers."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.core.errors import PrometheusError
from chalicelib.collect.prometheus import PrometheusClient, SigV4Auth

MATRIX = {"status": "success", "data": {"resultType": "matrix", "result": [
    {"metric": {"__name__": "kong_bandwidth_bytes", "service": "s"}, "values": [[100.0, "5"], [115.0, "NaN"]]}]}}


@pytest.fixture
def server():
    """Answers each request with the next scripted (status, body); records requests."""
    script, seen = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            seen.append({"headers": dict(self.headers), "body": body})
            status, payload = script.pop(0) if script else (200, MATRIX)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script, seen
    httpd.shutdown()


def test_raw_samples_keep_exact_values_and_nan_for_the_collector_to_reject(server):
    url, _, seen = server
    series = PrometheusClient(url).raw_samples("kong_bandwidth_bytes", 100, 160)
    assert series[0].samples[0] == (100.0, 5.0) and series[0].samples[1][1] != series[0].samples[1][1]
    assert "kong_bandwidth_bytes%5B60000ms%5D" in seen[0]["body"] and "time=159.999" in seen[0]["body"]


def test_bearer_and_basic_auth_headers(server):
    url, _, seen = server
    PrometheusClient(url, headers={"Authorization": "Bearer t0k"}).raw_samples("m", 0, 60)
    PrometheusClient(url, auth=("user", "pw")).raw_samples("m", 0, 60)
    assert seen[0]["headers"]["Authorization"] == "Bearer t0k"
    assert seen[1]["headers"]["Authorization"] == "Basic dXNlcjpwdw=="


def test_sigv4_signs_for_the_aps_service(server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    url, _, seen = server
    PrometheusClient(url, auth=SigV4Auth("eu-west-1")).raw_samples("m", 0, 60)
    auth = seen[0]["headers"]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/aps/aws4_request" in auth
    assert "X-Amz-Date" in seen[0]["headers"]


def test_a_503_is_retried_then_succeeds(server):
    url, script, seen = server
    script.extend([(503, {"status": "error"}), (503, {"status": "error"})])
    assert PrometheusClient(url, backoff=0).raw_samples("m", 0, 60)
    assert len(seen) == 3


@pytest.mark.parametrize("answer, message", [
    ((400, {"status": "error", "errorType": "bad_data", "error": "parse error"}), "bad_data parse error"),
    ((200, b"<html>proxy login</html>"), "not JSON"),
    ((200, {"status": "success", "data": {"resultType": "vector", "result": []}}), "expected a matrix"),
    ((200, {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}}), "malformed"),
])
def test_errors_and_garbage_raise_prometheus_error(server, answer, message):
    url, script, _ = server
    script.append(answer)
    with pytest.raises(PrometheusError, match=message):
        PrometheusClient(url, retries=0).raw_samples("m", 0, 60)


def test_a_timeout_raises_prometheus_error():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(PrometheusError, match="unreachable"):
        PrometheusClient(url, timeout=0.5, retries=0).raw_samples("m", 0, 60)
    listener.close()


def test_a_test_prometheus_whose_port_another_took_starts_again_on_another(monkeypatch):
    """Parallel test workers start many Prometheus servers: one may take the free port another
    chose before that one binds it. The late one must not mistake the other for itself."""
    from localrun import prometheus as local

    with local.PrometheusServer() as first:
        second = local.PrometheusServer()
        second.port = first.port  # as if the port was taken between the choice and the bind
        monkeypatch.setattr(local, "port_in_use", lambda port: False)
        try:
            second.start().wait_ready()
            assert second.port != first.port and second.process.poll() is None
            assert second._answers_as_itself() and first._answers_as_itself()
        finally:
            second.stop()


def test_a_server_answering_on_the_port_ours_chose_is_not_taken_for_ours():
    """The moto server and `chalice local` are checked the same way: the kernel says which
    process listens on the port; another that answered there is not ours, and ours is."""
    import socket
    import subprocess
    import sys

    from tests.support.listening import listens_on, start_ours

    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    taken = other.getsockname()[1]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    attempts = []

    def start():  # the first attempt's server never bound: another answers on its port
        attempts.append(1)
        if len(attempts) == 1:
            return sleeper, f"http://127.0.0.1:{taken}"
        from localrun.processes import start_moto_server

        return start_moto_server()

    try:
        assert listens_on(os.getpid(), taken) and not listens_on(sleeper.pid, taken)
        process, url = start_ours(start)
        try:
            assert len(attempts) == 2 and sleeper.poll() is not None  # the impostor's process was stopped
            assert listens_on(process.pid, int(url.rsplit(":", 1)[1]))
        finally:
            from localrun.processes import stop_process

            stop_process(process)
    finally:
        other.close()
        if sleeper.poll() is None:
            sleeper.kill()
