"""Enforcement hurts only the service it means, over real HTTP: the reconcile against the
development gateway's Kong Admin API (which resolves paths and keys as Kong does) with the
quotas and usage in a moto server. Hostile service names (``..``, ``.``, another service's id),
services Kong does not know, and plugins tagged ours that are not ours. The collector only
ingests here; each test calls the reconcile itself (``deps.enforcer.reconcile(now)``) once."""
import uuid

import pytest
import requests

from chalicelib.enforce.kong_admin import KongAdmin
from chalicelib.enforce.kong_plugin import TAG, plugin_body
from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig, Route
from localrun.kongadmin import AdminServer, AdminState
from tests.fakes.mailer import RecordingMailer
from tests.fakes.prometheus import FakePrometheus

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
NOW = DEC1 - 10 * 60
PAY_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "kong-service:pay"))  # the fake's id of service "pay"


def labels(service):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": "egress",
            "consumer": "", "workspace": "default", "instance": "n1"}


@pytest.fixture
def gateway():
    """Kong's services pay and media, plus ``..``, ``.`` and one named like pay's id (all valid
    Kong names); the proxy routes /pay and /media."""
    upstream = DemoUpstream().start()
    state = AdminState(["pay", "media", "..", ".", PAY_ID])
    admin = AdminServer(state).start()
    proxy = DevGateway(GatewayConfig(routes=[Route("/pay", upstream.url, "pay", "r"),
                                             Route("/media", upstream.url, "media", "r")]), admin=state).start()
    yield type("Gateway", (), {"state": state, "admin_url": admin.url, "proxy_url": proxy.url})
    for server in (proxy, admin, upstream):
        server.stop()


@pytest.fixture
def meter(aws_server, config, gateway):
    """Usage ingested by one collector run at NOW (before any quota rejects); returns the parts."""
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=1, KONG_ADMIN_URL=gateway.admin_url)
    prom = FakePrometheus()
    deps = config.start(clock=lambda: NOW, prometheus=prom, mailer=RecordingMailer(),
                        kong_admin=KongAdmin(gateway.admin_url, timeout=0.5, sleep=lambda s: None))

    def ingest(usage):
        for service, nbytes in usage.items():
            prom.add(labels(service), [(NOW - 90, 0), (NOW - 30, nbytes)])
        deps.collector.run(now=NOW)

    return type("Meter", (), {"deps": deps, "ingest": staticmethod(ingest)})


def ours(state, service):
    sid = state.service(service)["id"]
    return [p for p in state.plugins.values() if (p.get("service") or {}).get("id") == sid and TAG in (p["tags"] or [])]


def proxy_status(gateway, path):
    return requests.get(f"{gateway.proxy_url}{path}", timeout=5).status_code


def test_services_named_dot_dot_dot_or_like_another_services_id_never_block_more_than_themselves(gateway, meter):
    meter.ingest({"..": 5_000, ".": 5_000, PAY_ID: 5_000, "pay": 100, "media": 100})
    meter.deps.quotas.put_rules({"rules": [{"pattern": "*", "limit_bytes": 1_000, "action": "reject"}]})
    report = meter.deps.enforcer.reconcile(NOW)
    assert gateway.state.plugins == {}  # nothing global, nothing on pay (whose id the third name is)
    assert [proxy_status(gateway, p) for p in ("/pay", "/media")] == [200, 200]
    missing = {m["service"]: m["error"] for m in report.missing}
    assert set(missing) == {"..", ".", PAY_ID} and report.added == [] and report.blocked == []
    assert "not a Kong service name" in missing[".."] and "not a Kong service name" in missing["."]
    assert "no service named" in missing[PAY_ID]
    assert all(method == "GET" for method, _ in gateway.state.requests)
    assert ("GET", "/services/..") not in gateway.state.requests  # never sent, not even as a lookup


def test_plugins_tagged_ours_but_not_ours_are_removed_and_reported(gateway, meter):
    meter.ingest({"pay": 5_000, "media": 100})
    meter.deps.quotas.put("pay", {"limit_bytes": 1_000, "action": "reject"})
    state = gateway.state
    _, everywhere = state.create_plugin(None, plugin_body("left by an old version"))  # blocks the whole gateway
    _, on_route = state.create_plugin(None, plugin_body("x"), route="7a9e1c2d-3b4f-4a5b-8c6d-7e8f9a0b1c2d")
    _, foreign = state.create_plugin(state.service("media"), {"name": "cors", "config": {}, "tags": [TAG]})
    assert proxy_status(gateway, "/media") == 429
    report = meter.deps.enforcer.reconcile(NOW)
    assert {d["plugin_id"]: d["why"] for d in report.drift} == {
        everywhere["id"]: "global (no service): it blocks the whole gateway",
        on_route["id"]: "scoped to a route", foreign["id"]: "a cors plugin"}
    assert report.added == ["pay"] and [p["id"] for p in state.plugins.values()] == [ours(state, "pay")[0]["id"]]
    assert [proxy_status(gateway, p) for p in ("/pay", "/media")] == [429, 200]


def test_sixty_services_kong_does_not_know_neither_stop_a_block_nor_a_lift(gateway, meter):
    ghosts = {f"ghost-{i:02d}": 5_000 for i in range(60)}  # sorted before pay: they came first
    meter.ingest({**ghosts, "pay": 5_000, "media": 100})
    meter.deps.quotas.put("pay", {"limit_bytes": 1_000, "action": "reject"})
    meter.deps.quotas.put_rules({"rules": [{"pattern": "ghost-*", "limit_bytes": 1_000, "action": "reject"}]})
    state = gateway.state
    state.create_plugin(state.service("media"), plugin_body("an earlier block, no longer due"))
    report = meter.deps.enforcer.reconcile(NOW)
    assert report.added == ["pay"] and report.lifted == ["media"]
    assert len(report.missing) == 60 and report.errors == []
    assert len(ours(state, "pay")) == 1 and ours(state, "media") == []
    assert [proxy_status(gateway, p) for p in ("/pay", "/media")] == [429, 200]


def test_a_lift_never_waits_behind_adds_when_the_budget_is_spent(gateway, meter):
    from chalicelib.enforce.reconcile import Reconciler

    meter.ingest({"pay": 5_000, "media": 100})
    meter.deps.quotas.put("pay", {"limit_bytes": 1_000, "action": "reject"})
    state = gateway.state
    state.create_plugin(state.service("media"), plugin_body("no longer due"))
    deps = meter.deps
    report = Reconciler(deps.kong_admin, deps.store, deps.quotas, deps.enforcement_ledger, max_changes=1).reconcile(NOW)
    assert report.lifted == ["media"] and report.added == ["pay"]
