"""A fault-injecting HTTP proxy for AWS JSON APIs (DynamoDB): forwards to a real server
(the moto server) and answers chosen calls with throttling or server errors instead."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict

import requests

THROTTLED = (400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                   "message": "injected: throughput exceeded"})
SERVER_ERROR = (500, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                      "message": "injected: internal server error"})


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.calls: Dict[str, int] = {}
        self.plan: Dict[str, list] = {}  # operation -> faults for its next calls (None = pass through)
        self.always: Dict[str, tuple] = {}  # operation -> fault for every call after the planned ones

    def fail_next(self, operation: str, *faults) -> None:
        with self.lock:
            self.plan.setdefault(operation, []).extend(faults)

    def fail_always(self, operation: str, fault) -> None:
        with self.lock:
            self.always[operation] = fault

    def heal(self) -> None:
        with self.lock:
            self.plan.clear()
            self.always.clear()

    def _fault_for(self, operation: str):
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            queue = self.plan.get(operation)
            if queue:
                return queue.pop(0)
            return self.always.get(operation)

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").split(".")[-1]
                fault = proxy._fault_for(operation)
                if fault:
                    status, payload = fault
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                else:
                    answer = requests.post(proxy.upstream + self.path, data=body, timeout=30,
                                           headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                    data = answer.content
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
