"""The CLI's API key stays with the API: a redirect to another origin (host name or port) is
followed without ``x-api-key``; within the same origin it keeps it. Two real HTTP servers on
loopback, one redirecting to the other."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bwmeter.client import Client, NetworkError

KEY = "secret-api-key-0123456789"


@pytest.fixture
def servers():
    started = []

    def start(redirect_to=None, status=302):
        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                httpd.seen.append({"method": self.command, "path": self.path,
                                   "key": self.headers.get("x-api-key"), "body": body})
                if redirect_to is not None and not self.path.startswith("/same"):
                    self.send_response(status)
                    self.send_header("Location", redirect_to(self.path))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps({"ok": True, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.seen = []
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd

    yield start
    for httpd in started:
        httpd.shutdown()


def test_a_redirect_to_another_port_and_host_name_gets_no_api_key(servers):
    other = servers()
    target = f"http://localhost:{other.server_address[1]}"  # another host name and another port
    api = servers(redirect_to=lambda path: target + path)
    answer = Client(f"http://127.0.0.1:{api.server_address[1]}", KEY).json("GET", "/v1/services")
    assert answer == {"ok": True, "path": "/v1/services"}
    assert api.seen[0]["key"] == KEY
    assert other.seen == [{"method": "GET", "path": "/v1/services", "key": None, "body": ""}]


def test_a_redirect_to_the_same_host_name_on_another_port_gets_no_api_key(servers):
    other = servers()
    api = servers(redirect_to=lambda path: f"http://127.0.0.1:{other.server_address[1]}{path}", status=307)
    Client(f"http://127.0.0.1:{api.server_address[1]}", KEY).json("PUT", "/v1/services/pay/quota",
                                                                   body={"limit_bytes": 5})
    # 307 keeps the method and body, and still not the key
    assert other.seen == [{"method": "PUT", "path": "/v1/services/pay/quota", "key": None,
                           "body": '{"limit_bytes": 5}'}]


def test_a_redirect_within_the_api_keeps_the_key(servers):
    api = servers(redirect_to=lambda path: "/same" + path)
    Client(f"http://127.0.0.1:{api.server_address[1]}", KEY).json("GET", "/v1/health")
    assert [(s["path"], s["key"]) for s in api.seen] == [("/v1/health", KEY), ("/same/v1/health", KEY)]


def test_a_redirect_loop_ends_with_a_message(servers):
    api = servers(redirect_to=lambda path: path)
    with pytest.raises(NetworkError, match="redirected more than 5 times"):
        Client(f"http://127.0.0.1:{api.server_address[1]}", KEY).json("GET", "/v1/health")
