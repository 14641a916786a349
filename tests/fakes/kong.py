"""An in-memory Kong Admin API for unit tests: the ``KongAdminPort`` (chalicelib/core/ports.py)
as KongAdmin presents it, held to the same contract as KongAdmin on the development gateway's
Admin API in tests/integration/test_contracts.py."""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, Optional

from chalicelib.core.errors import GatewayError, GatewayServiceNotFound
from chalicelib.enforce.kong_admin import TAG, BlockPlugin, OurPlugins


class InMemoryKongAdmin:
    def __init__(self, services: Iterable[str] = (), consumers: Iterable[str] = ()):
        self.services = set(services)
        self.consumers = set(consumers)
        self.plugins: Dict[str, dict] = {}  # id -> {"service", "message", "ours"}
        self._ids = (f"plugin-{n}" for n in itertools.count(1))

    def add_foreign_block(self, service: str) -> str:
        """A request-termination plugin an operator added (not tagged ours)."""
        return self._add(service, None, ours=False)

    def _add(self, service: str, message: Optional[str], ours: bool) -> str:
        plugin_id = next(self._ids)
        self.plugins[plugin_id] = {"service": service, "message": message, "ours": ours}
        return plugin_id

    def list_our_plugins(self, workspaces: Iterable[str] = ()) -> OurPlugins:
        """Our blocks; this fake has no scopes, so never drift (a tagged plugin that is not ours)."""
        return OurPlugins([BlockPlugin(plugin_id, p["service"], f"id-{p['service']}", p["message"],
                                       p.get("kind", "service"))
                           for plugin_id, p in self.plugins.items() if p["ours"]])

    def block_consumer(self, consumer: str, message: str) -> str:
        if consumer not in self.consumers:
            raise GatewayServiceNotFound(f"Kong has no consumer named {consumer!r}")
        for plugin_id, p in self.plugins.items():
            if p.get("kind") == "consumer" and p["service"] == consumer:
                return plugin_id
        plugin_id = self._add(consumer, message, ours=True)
        self.plugins[plugin_id]["kind"] = "consumer"
        return plugin_id

    def block(self, service: str, message: str) -> str:
        if service not in self.services:
            raise GatewayServiceNotFound(f"Kong has no service {service!r} (404)")
        for plugin_id, p in self.plugins.items():
            if p["service"] == service and p.get("kind", "service") == "service":
                if p["ours"]:
                    return plugin_id
                raise GatewayError(f"Kong service {service!r} already has a request-termination plugin that is "
                                   f"not tagged {TAG}; it was left as it is")
        return self._add(service, message, ours=True)

    def unblock(self, plugin_id: str, workspace: Optional[str] = None) -> None:
        self.plugins.pop(plugin_id, None)
