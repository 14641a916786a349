"""The webhook adapter: alerts POSTed as JSON, signed so receivers can trust them.

The signature header is ``X-Bandwidth-Meter-Signature: sha256=<hex>``, an HMAC-SHA256
of ``<timestamp>.<body>`` with WEBHOOK_SECRET; ``X-Bandwidth-Meter-Timestamp`` carries
the timestamp so receivers can refuse replays.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests

from chalicelib.core.errors import BandwidthMeterError


class NotifyError(BandwidthMeterError):
    """A notification channel (the webhook) did not accept an alert."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    def __init__(self, secret: str, session=None, timeout: float = 5, clock=time.time):
        self.secret = secret
        self.session = session or requests.Session()
        self.timeout = timeout
        self.clock = clock

    def send(self, url: str, payload: dict) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        headers = {"Content-Type": "application/json", "X-Bandwidth-Meter-Timestamp": timestamp,
                   "X-Bandwidth-Meter-Signature": signature(self.secret, timestamp, body)}
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as e:
            raise NotifyError(f"webhook {url} unreachable: {e}") from e
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"webhook {url} answered HTTP {response.status_code}")
