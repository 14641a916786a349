"""The Kong Admin API adapter (Kong Gateway 3.x, DB mode): block a service with the bundled
``request-termination`` plugin, find our plugins again by tag, lift a block.

Requests, as Kong's Admin API reference has them:
- ``GET  /services/{name}/plugins``            the service's plugins (404: no such service)
- ``POST /services/{name}/plugins``            ``{"name": "request-termination", "config": {"status_code":
  429, "message": ...}, "tags": ["bandwidth-meter"]}`` -> 201; 409 when the service already has one
- ``GET  /plugins?tags=bandwidth-meter``       ours, paged (``offset`` / ``next``)
- ``GET  /services/{id}``                      a plugin names its service by id only
- ``DELETE /plugins/{id}``                     204 (also when it is already gone)
With ``KONG_WORKSPACE`` every path is prefixed with ``/{workspace}``; ``KONG_ADMIN_TOKEN`` is
sent as ``Kong-Admin-Token`` (Kong Enterprise RBAC).

Retries (5xx, timeouts, refused connections) never create a second plugin: ``block`` looks for
its own plugin before creating one, and a 409 after a create whose answer was lost means it
is there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional
from urllib.parse import quote

import requests

from chalicelib.core.enforcement import BLOCK_STATUS, PLUGIN, TAG
from chalicelib.core.errors import GatewayError, GatewayServiceNotFound

RETRIES = 3  # attempts per request; a reconcile runs again a minute later anyway
PAGE_SIZE = 1000  # Kong's maximum


@dataclass(frozen=True)
class BlockPlugin:
    """One of our request-termination plugins on a Kong service."""

    id: str
    service: str  # the Kong service's name ("" if Kong no longer knows it)
    service_id: str
    message: Optional[str] = None


def plugin_body(message: str) -> dict:
    """What ``block`` posts (also the shape of the decK listing)."""
    return {"name": PLUGIN, "config": {"status_code": BLOCK_STATUS, "message": message}, "tags": [TAG]}


class KongAdmin:
    def __init__(self, base_url: str, token: Optional[str] = None, workspace: Optional[str] = None,
                 session: Optional[requests.Session] = None, timeout: float = 5,
                 sleep: Callable[[float], None] = time.sleep, retries: int = RETRIES):
        self.base_url = base_url.rstrip("/") + (f"/{quote(workspace, safe='')}" if workspace else "")
        self.session = session or requests.Session()
        self.headers = {"Accept": "application/json", **({"Kong-Admin-Token": token} if token else {})}
        self.timeout = timeout
        self.sleep = sleep
        self.retries = max(1, retries)
        self.requests_made = 0

    # -- the operations ------------------------------------------------------------------------
    def list_our_plugins(self) -> List[BlockPlugin]:
        """Every request-termination plugin tagged ours, with its service's name."""
        plugins, names = [], {}
        path: Optional[str] = f"/plugins?tags={TAG}&size={PAGE_SIZE}"
        while path:
            page = self._request("GET", path, "listing our plugins").json()
            for plugin in page.get("data", []):
                if plugin.get("name") != PLUGIN or TAG not in (plugin.get("tags") or []):
                    continue
                service_id = (plugin.get("service") or {}).get("id")
                if not service_id:
                    continue  # not on a service: not one of ours, whatever its tag
                if service_id not in names:
                    names[service_id] = self._service_name(service_id)
                plugins.append(BlockPlugin(plugin["id"], names[service_id], service_id,
                                           (plugin.get("config") or {}).get("message")))
            offset = page.get("offset")
            path = f"/plugins?tags={TAG}&size={PAGE_SIZE}&offset={quote(str(offset), safe='')}" if offset else None
        return plugins

    def block(self, service: str, message: str) -> str:
        """Make sure the service has our request-termination plugin; return its id."""
        existing = self._own_plugin(service)
        if existing:
            return existing
        answer = self._request("POST", f"/services/{self._name(service)}/plugins", f"blocking {service!r}",
                               json=plugin_body(message), accept=(201, 409), service=service)
        if answer.status_code == 201:
            return answer.json()["id"]
        # 409: the service already has a request-termination plugin: ours (an earlier attempt whose
        # answer was lost) or one an operator added, which we leave alone and report.
        existing = self._own_plugin(service)
        if existing:
            return existing
        raise GatewayError(f"Kong service {service!r} already has a request-termination plugin that is not "
                           f"tagged {TAG}; it was left as it is")

    def unblock(self, plugin_id: str) -> None:
        self._request("DELETE", f"/plugins/{quote(plugin_id, safe='')}", f"lifting block {plugin_id}",
                      accept=(204, 404))

    # -- helpers -----------------------------------------------------------------------------
    def _own_plugin(self, service: str) -> Optional[str]:
        page = self._request("GET", f"/services/{self._name(service)}/plugins?size={PAGE_SIZE}",
                             f"reading the plugins of {service!r}", service=service).json()
        for plugin in page.get("data", []):
            if plugin.get("name") == PLUGIN and TAG in (plugin.get("tags") or []):
                return plugin["id"]
        return None

    def _service_name(self, service_id: str) -> str:
        answer = self._request("GET", f"/services/{quote(service_id, safe='')}", "reading a service",
                               accept=(200, 404))
        if answer.status_code == 404:
            return ""  # the service is gone (its plugins go with it in Kong)
        return answer.json().get("name") or ""

    @staticmethod
    def _name(service: str) -> str:
        return quote(service, safe="")

    def _request(self, method: str, path: str, what: str, json: Optional[dict] = None,
                 accept=(200,), service: Optional[str] = None) -> requests.Response:
        url = self.base_url + path
        last: Optional[str] = None
        for attempt in range(self.retries):
            if attempt:
                self.sleep(min(0.5 * 2 ** (attempt - 1), 2.0))
            self.requests_made += 1
            try:
                answer = self.session.request(method, url, json=json, headers=self.headers, timeout=self.timeout)
            except requests.RequestException as e:
                last = f"{type(e).__name__}"
                continue
            if answer.status_code in accept:
                return answer
            if answer.status_code == 404 and service is not None:
                raise GatewayServiceNotFound(f"Kong has no service {service!r} (404)")
            if answer.status_code >= 500 or answer.status_code == 429:
                last = f"HTTP {answer.status_code}"
                continue
            raise GatewayError(f"Kong Admin API refused {what}: HTTP {answer.status_code} {_message(answer)}")
        raise GatewayError(f"Kong Admin API failed {what} after {self.retries} attempts: {last}")


def _message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("message", ""))[:200]
    except ValueError:
        return answer.text[:200]
