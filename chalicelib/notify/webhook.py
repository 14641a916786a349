"""The webhook adapter: alerts POSTed as JSON, signed so receivers can trust them.

The signature header is ``X-Bandwidth-Meter-Signature: sha256=<hex>``, an HMAC-SHA256
of ``<timestamp>.<body>`` with WEBHOOK_SECRET; ``X-Bandwidth-Meter-Timestamp`` carries
the timestamp so receivers can refuse replays.

The target is checked again when sending (core/webhook_targets.py), in every mode:
the host is resolved here, every address it resolves to must be allowed, and the request goes
to the first of those very addresses (the name still sent as Host and, for https, as the TLS
server name checked against the certificate), so a name that resolves to a public address for
the check and to 169.254.169.254 a moment later (DNS rebinding) cannot redirect it. Redirects
are never followed: a 3xx is a failed delivery. Error texts name neither the URL nor the
receiver's answer: they are stored with the alert, where read keys may see them.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Callable, List, cast
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from chalicelib.core.errors import BandwidthMeterError
from chalicelib.core.webhook_targets import STRICT, UnsafeWebhookTarget, WebhookTargetPolicy


class NotifyError(BandwidthMeterError):
    """A notification channel (the webhook) did not accept an alert."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def resolve(host: str, port: int) -> List[str]:
    """Every address ``host`` resolves to now (the system resolver)."""
    return [cast(str, info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class _PinnedTLS(HTTPAdapter):
    """Connects to an address while checking the certificate against the URL's host name."""

    def __init__(self, server_name: str):
        self.server_name = server_name
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self.server_name
            pool_kwargs["assert_hostname"] = self.server_name
        return host_params, pool_kwargs


class WebhookSender:
    def __init__(self, secret: str, session=None, timeout: float = 5, clock=time.time,
                 policy: WebhookTargetPolicy = STRICT, resolver: Callable[[str, int], List[str]] = resolve,
                 verify=True):
        self.secret = secret
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.policy = policy
        self.resolver = resolver
        self.verify = verify  # a CA bundle path for receivers with a private CA (and tests)

    def send(self, url: str, payload: dict) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        headers = {"Content-Type": "application/json", "X-Bandwidth-Meter-Timestamp": timestamp,
                   "X-Bandwidth-Meter-Signature": signature(self.secret, timestamp, body)}
        target, session = self._target(url, headers)
        try:
            response = session.post(target, data=body, headers=headers, timeout=self.timeout,
                                    allow_redirects=False, verify=self.verify)
        except requests.RequestException as e:
            raise NotifyError(f"webhook unreachable ({type(e).__name__})") from e
        if 300 <= response.status_code < 400:
            raise NotifyError(f"webhook answered a redirect (HTTP {response.status_code}); redirects are not followed")
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"webhook answered HTTP {response.status_code}")

    def _target(self, url: str, headers: dict):
        """The URL to post to and the session to post with, pinned to an address that passed
        the policy just now (locally too: a name may resolve to a metadata address)."""
        try:
            self.policy.check_url(url)  # a URL stored before the policy existed, or in another stage
        except UnsafeWebhookTarget as e:
            raise NotifyError(f"webhook refused: {e}") from None
        session = self.session or requests.Session()
        parts = urlsplit(url)
        hostname = cast(str, parts.hostname)  # check_url refused a URL without a host
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(hostname, port)]
        except (OSError, ValueError) as e:
            raise NotifyError(f"webhook host does not resolve ({type(e).__name__})") from None
        if not addresses:
            raise NotifyError("webhook host does not resolve")
        try:
            for address in addresses:
                self.policy.check_address(address)
        except UnsafeWebhookTarget as e:
            raise NotifyError(f"webhook refused: its host resolves to an internal address ({e})") from None
        pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
        headers["Host"] = parts.netloc
        target = urlunsplit((parts.scheme, f"{pinned}:{port}", parts.path or "/", parts.query, ""))
        # Mounted for this address only (the longest prefix wins), so a session that is passed in
        # keeps its own adapters for anything else.
        session.mount(f"https://{pinned}:{port}/", _PinnedTLS(hostname))
        return target, session
