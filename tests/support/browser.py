"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
null-terminated JSON on file descriptors 3 and 4, so no WebSocket client is needed), with every
request the browser makes sent through a recording proxy that forwards only to 127.0.0.1.

A page is shown to need no network beyond this machine in two ways: Chromium sends all traffic,
loopback included (``<-loopback>``), through the proxy, which forwards loopback requests only
(so a page that needed more would break), and the page's own requests are recorded from the
DevTools Network events (Chromium's background traffic, refused by the proxy, is not the page's)."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import List, Optional

import pytest
import requests

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost"}


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True)
        path = shutil.which("chromium")
    if not path:
        pytest.skip("Debian's chromium is not installed and cannot be installed here (needs root and apt)")
    return path


class RecordingProxy:
    """An HTTP forward proxy on 127.0.0.1 that records every request and forwards loopback only."""

    def __init__(self):
        self.requests: List[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                proxy.requests.append(self.path if "://" in self.path else f"{self.command} {self.path}")
                host = urllib.parse.urlsplit(self.path).hostname
                if self.command == "CONNECT" or host not in LOOPBACK:
                    self.send_error(403, "this test allows no network beyond 127.0.0.1")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection", "host", "content-length")}
                upstream = requests.request(self.command, self.path, headers=headers,
                                            data=self.rfile.read(length) if length else None,
                                            allow_redirects=False, timeout=30)
                body = upstream.content
                self.send_response(upstream.status_code)
                for name, value in upstream.headers.items():
                    if name.lower() not in ("transfer-encoding", "content-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_CONNECT = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _above_nine(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page, commanded over the DevTools pipe."""

    def __init__(self, proxy: Optional[RecordingProxy] = None, window_size: str = "1280,900"):
        self.profile = tempfile.TemporaryDirectory()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Move the child's ends above 9 first, so placing them at 3 and 4 cannot overwrite either.
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))
        extra = [f"--proxy-server=http://{proxy.url}", "--proxy-bypass-list=<-loopback>"] if proxy else []
        # The child finds the pipe ends at fd 3 (reads) and fd 4 (writes).
        self.process = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}",
             f"--window-size={window_size}", *extra, "about:blank"],
            pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(to_browser_r, 3), os.dup2(from_browser_w, 4)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: List[dict] = []
        targets = self.command("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.command("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.command("Page.enable", session=True)
        self.command("Network.enable", session=True)

    def page_requests(self) -> List[str]:
        """Every URL the page has requested so far (not the browser's own background traffic)."""
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def command(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if "method" in answer:
                    self.events.append(answer)
                elif answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method}: no answer from Chromium")
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def navigate(self, url: str) -> None:
        self.command("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str, timeout: float = 60):
        """Run JavaScript in the page (awaiting a promise) and return its JSON-able value."""
        result = self.command("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                              awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path) -> None:
        import base64

        data = self.command("Page.captureScreenshot", session=True, format="png")["data"]
        with open(path, "wb") as out:
            out.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.command("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self.profile.cleanup()
