"""Consumer blocks end to end over real HTTP: the reconcile (in the scheduled run) makes the
development gateway's Kong Admin API hold a consumer-scoped request-termination plugin for a
consumer over its reject quota, the gateway refuses that consumer (and only it) on every service,
and the block is lifted when no longer due; the quotas and usage live in a moto server, the
consumers' usage items written as the collector writes them. The clock is fixed."""
import json

import pytest
import requests
from chalice.test import Client

from chalicelib import schedule
from chalicelib.core.models import CONSUMER, CONSUMERS_PK, ConsumerUsage
from chalicelib.core.periods import period_at
from chalicelib.enforce.kong_admin import KongAdmin
from localrun.devgateway import Consumer, DemoUpstream, DevGateway, GatewayConfig, KeyAuth, Route
from localrun.kongadmin import AdminServer, AdminState
from tests.fakes.mailer import RecordingMailer
from tests.fakes.prometheus import FakePrometheus
from tests.support.streams import alerts_poller, drain

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
NOW = DEC1 - 20 * 60
TAG = "bandwidth-meter"
KEYS = {"acme": "acme-key", "globex": "globex-key"}


@pytest.fixture
def kong():
    """Services pay and search want a key; consumers acme and globex; the Admin API on its own port."""
    upstream = DemoUpstream().start()
    state = AdminState(["pay", "search"])
    admin = AdminServer(state).start()
    config = GatewayConfig("3.7", [Route("/pay", upstream.url, "pay", "checkout"),
                                   Route("/search", upstream.url, "search", "query")],
                           consumers=[Consumer(name, (key,)) for name, key in KEYS.items()],
                           key_auth=[KeyAuth(service="pay"), KeyAuth(service="search")])
    gateway = DevGateway(config, admin=state).start()
    yield type("Kong", (), {"state": state, "admin_url": admin.url, "proxy_url": gateway.url})
    for server in (gateway, admin, upstream):
        server.stop()


@pytest.fixture
def world(aws_server, config, kong):
    mailer = RecordingMailer()
    now = {"t": NOW}
    deps = config.set(KONG_ADMIN_URL=kong.admin_url).start(
        clock=lambda: now["t"], prometheus=FakePrometheus(), mailer=mailer, kong_admin=KongAdmin(kong.admin_url, timeout=0.5, sleep=lambda s: None))

    class World:
        state = kong.state
        book = deps.quotas
        sent = mailer.sent

        @staticmethod
        def used(consumer, total, at=NOW):
            """The consumer's usage item as the collector writes it (its month so far)."""
            p = period_at("month", at)
            ConsumerUsage(CONSUMERS_PK, consumer, consumer=consumer, first_seen=p.start, last_active=at,
                          period_kind="month", period_anchor=1, period_start=p.start, period_end=p.end,
                          ingress=0, egress=total, total=total, through=at,
                          services={"pay": {"ingress": 0, "egress": total}}).save()

        @staticmethod
        def run(at):
            """The scheduled run at ``at`` (nothing to collect: the reconcile is what is tested)."""
            now["t"] = at
            return schedule.scheduled_run(deps, shard=0)

        @staticmethod
        def reconcile(at):
            now["t"] = at
            return deps.enforcer.reconcile(at)

        @staticmethod
        def ours(consumer=None):
            plugins = [p for p in kong.state.plugins.values() if TAG in (p["tags"] or [])]
            if consumer is None:
                return plugins
            cid = kong.state.consumer(consumer)["id"]
            return [p for p in plugins if (p.get("consumer") or {}).get("id") == cid]

        @staticmethod
        def proxy(path, consumer):
            return requests.get(f"{kong.proxy_url}{path}?size=10", headers={"apikey": KEYS[consumer]}, timeout=5)

        @staticmethod
        def api(path):
            import app

            with Client(app.app, stage_name="local") as client:
                answer = client.http.get(path)
            assert answer.status_code == 200, answer.body
            return json.loads(answer.body)

    World.book.put("acme", {"limit_bytes": 10_000, "action": "reject", "notify": ["acme-owner@example.com"]},
                   kind=CONSUMER)
    return World


@pytest.fixture
def alerts(world, moto_server, aws_server):
    poller = alerts_poller(moto_server, aws_server.table_name)
    return lambda: drain(poller)


def test_a_consumer_over_its_reject_quota_is_refused_on_every_service_and_others_are_not(world):
    world.used("acme", 9_000)
    world.reconcile(NOW)
    assert world.ours() == [] and world.proxy("/pay", "acme").status_code == 200
    world.used("acme", 10_000)
    report = world.reconcile(NOW + 60)
    assert report.added == ["consumer acme"] and report.blocked == ["consumer acme"]
    [plugin] = world.ours("acme")
    assert plugin["name"] == "request-termination" and plugin["tags"] == [TAG]
    assert plugin["service"] is None and plugin["route"] is None and plugin["config"]["status_code"] == 429
    for path in ("/pay", "/search"):
        refused = world.proxy(path, "acme")
        assert refused.status_code == 429
        assert refused.json()["message"] == (
            "Bandwidth quota exceeded: consumer acme reached 100% of its monthly quota of 10000 bytes (total); "
            "requests are refused until 2026-12-01T00:00:00Z")
        assert world.proxy(path, "globex").status_code == 200


def test_repeated_reconciles_keep_one_consumer_plugin_and_post_nothing_more(world):
    world.used("acme", 20_000)
    world.reconcile(NOW)
    posts = [r for r in world.state.requests if r[0] == "POST"]
    assert posts == [("POST", f"/consumers/{world.state.consumer('acme')['id']}/plugins")]
    world.reconcile(NOW + 60)
    world.run(NOW + 120)
    assert len(world.ours("acme")) == 1 and [r for r in world.state.requests if r[0] == "POST"] == posts


def test_a_raised_limit_lifts_the_consumer_block(world):
    world.used("acme", 20_000)
    world.reconcile(NOW)
    world.book.put("acme", {"limit_bytes": 100_000, "action": "reject"}, kind=CONSUMER)
    report = world.run(NOW + 60)
    assert world.ours() == [] and world.proxy("/pay", "acme").status_code == 200
    assert report["enforcement"]["lifted"] == ["consumer acme"]


def test_a_new_period_lifts_the_consumer_block_without_traffic(world):
    world.used("acme", 20_000)
    world.reconcile(NOW)
    world.reconcile(DEC1 - 60)
    assert len(world.ours("acme")) == 1
    world.reconcile(DEC1)
    assert world.ours() == [] and world.proxy("/search", "acme").status_code == 200


def test_a_service_of_the_same_name_is_not_blocked_by_the_consumers_quota(world):
    world.state.add_service("acme")
    world.used("acme", 20_000)
    world.reconcile(NOW)
    assert [p["service"] for p in world.ours()] == [None]  # the consumer's, not on the service acme


def test_a_stray_consumer_plugin_tagged_ours_is_drift_and_removed(world):
    globex = world.state.consumer("globex")["id"]
    _, plugin = world.state.create_plugin(None, {"name": "request-termination", "tags": [TAG],
                                              "config": {"status_code": 429, "message": "x"}}, consumer=globex)
    report = world.reconcile(NOW)
    assert [d["plugin_id"] for d in report.drift] == [plugin["id"]]
    assert report.drift[0]["why"] == "scoped to a consumer that has no block due"
    assert world.ours() == [] and world.proxy("/pay", "globex").status_code == 200


def test_a_consumer_kong_does_not_know_is_missing_and_costs_nothing(world):
    world.book.put("ghost", {"limit_bytes": 1, "action": "reject"}, kind=CONSUMER)
    world.used("ghost", 5)
    report = world.reconcile(NOW)
    assert report.missing == [{"consumer": "ghost", "kind": "consumer",
                               "error": "Kong has no consumer named 'ghost'"}]
    assert world.ours() == []


def test_the_enforcement_listing_and_its_deck_file_show_the_consumer_block(world):
    world.used("acme", 20_000)
    world.reconcile(NOW)
    body = world.api("/v1/enforcement")
    [entry] = body["blocked"]
    assert entry["kind"] == "consumer" and entry["consumer"] == "acme" and "service" not in entry
    assert entry["state"] == "blocked" and entry["at_gateway"] is True and entry["usage_bytes"] == 20_000
    [deck] = body["deck"]["plugins"]
    assert deck["consumer"] == "acme" and "service" not in deck and deck["config"]["status_code"] == 429
    assert body["gateway"]["blocked_consumers"] == ["acme"] and body["gateway"]["blocked"] == []
    conforms(body)
    world.book.delete("acme", kind=CONSUMER)
    body = world.api("/v1/enforcement")
    assert body["blocked"] == [] and body["lift_pending"][0]["consumer"] == "acme"
    assert body["lift_pending"][0]["kind"] == "consumer"
    conforms(body)


def conforms(body):
    """The answer matches the published OpenAPI schema of /v1/enforcement."""
    import jsonschema

    from chalicelib.api.apidocs import openapi_spec
    jsonschema.validate(body, {"$ref": "#/components/schemas/Enforcement", "components": openapi_spec()["components"]})


def test_the_owners_are_told_the_consumer_is_blocked_and_then_not(world, alerts):
    world.used("acme", 20_000)
    world.reconcile(NOW)
    alerts()
    [blocked] = [m for m in world.sent if "is blocked" in m["subject"]]
    assert blocked["subject"] == "[Bandwidth Meter] consumer acme is blocked: it reached 100% of its quota"
    assert "Consumer: acme" in blocked["text"] and "on every service" in blocked["text"]
    assert blocked["to"] == ["acme-owner@example.com"]
    world.reconcile(DEC1)
    alerts()
    [lifted] = [m for m in world.sent if "no longer blocked" in m["subject"]]
    assert lifted["subject"] == "[Bandwidth Meter] consumer acme is no longer blocked"
    assert "a new quota period began" in lifted["text"]


def test_a_workspace_qualified_consumer_is_blocked_under_its_workspace(aws_server, config):
    """``eu:acme`` is looked up and blocked at /eu/consumers/acme, and found again in /eu/plugins."""
    state = AdminState(["pay"], workspace="eu", workspace_only=True)
    admin = AdminServer(state).start()
    try:
        consumer = state.add_consumer("acme")
        deps = config.set(KONG_ADMIN_URL=admin.url).start(
            clock=lambda: NOW, kong_admin=KongAdmin(admin.url, timeout=0.5, sleep=lambda s: None))
        deps.quotas.put("eu:acme", {"limit_bytes": 10, "action": "reject"}, kind=CONSUMER)
        ConsumerUsage(CONSUMERS_PK, "eu:acme", consumer="eu:acme", first_seen=NOW, last_active=NOW,
                      period_kind="month", period_anchor=1, period_start=period_at("month", NOW).start,
                      period_end=DEC1, ingress=0, egress=50, total=50, through=NOW).save()
        assert deps.enforcer.reconcile(NOW).added == ["consumer eu:acme"]
        assert ("GET", "/eu/consumers/acme") in state.requests
        assert ("POST", f"/eu/consumers/{consumer['id']}/plugins") in state.requests
        assert deps.enforcer.reconcile(NOW + 60).added == []  # found again under /eu/plugins
        assert ("GET", "/eu/plugins") in state.requests and len(state.plugins) == 1
        deps.quotas.delete("eu:acme", kind=CONSUMER)
        assert deps.enforcer.reconcile(NOW + 120).lifted == ["consumer eu:acme"]
        assert state.plugins == {}
    finally:
        admin.stop()


def test_a_workspace_qualified_service_is_blocked_under_its_workspace(aws_server, config):
    from chalicelib.core.models import SERVICES_PK, ServiceUsage

    state = AdminState(["pay"], workspace="eu", workspace_only=True)
    admin = AdminServer(state).start()
    try:
        deps = config.set(KONG_ADMIN_URL=admin.url).start(
            clock=lambda: NOW, kong_admin=KongAdmin(admin.url, timeout=0.5, sleep=lambda s: None))
        deps.quotas.put("eu:pay", {"limit_bytes": 10, "action": "reject"})
        ServiceUsage(SERVICES_PK, "eu:pay", service="eu:pay", first_seen=NOW, last_active=NOW, period_kind="month",
                     period_anchor=1, period_start=period_at("month", NOW).start, period_end=DEC1, ingress=0,
                     egress=50, total=50, through=NOW).save()
        assert deps.enforcer.reconcile(NOW).added == ["eu:pay"]
        service_id = state.service("pay")["id"]
        assert ("GET", "/eu/services/pay") in state.requests
        assert ("POST", f"/eu/services/{service_id}/plugins") in state.requests
        report = deps.enforcer.reconcile(NOW + 60)
        assert report.added == [] and report.drift == [] and report.blocked == ["eu:pay"]
    finally:
        admin.stop()


def test_a_hostile_workspace_in_a_key_is_never_sent_and_does_not_stop_the_other_blocks(world):
    for key in ("../plugins:acme", "..:acme"):
        world.book.put(key, {"limit_bytes": 1, "action": "reject"}, kind=CONSUMER)
        world.used(key, 5)
    world.used("acme", 20_000)
    report = world.reconcile(NOW)
    assert report.blocked == ["consumer acme"] and len(world.ours("acme")) == 1
    assert sorted(m["consumer"] for m in report.missing) == ["../plugins:acme", "..:acme"]
    assert all("not a Kong service name" in m["error"] for m in report.missing)
    assert not any(".." in path for _, path in world.state.requests)


def test_a_consumer_named_by_an_email_is_blocked_and_one_a_url_would_rewrite_is_never_sent(world):
    email = world.state.add_consumer("app+1@example.com")
    for name in ("app+1@example.com", "a/../b", "x%2Fy"):
        world.book.put(name, {"limit_bytes": 1, "action": "reject"}, kind=CONSUMER)
        world.used(name, 5)
    report = world.reconcile(NOW)
    assert report.added == ["consumer app+1@example.com"]
    [plugin] = world.ours()
    assert plugin["consumer"]["id"] == email["id"]
    assert sorted(m["consumer"] for m in report.missing) == ["a/../b", "x%2Fy"]
    assert all("is not a Kong consumer username" in m["error"] for m in report.missing)
    assert not any("/b" in path or "2F" in path for _, path in world.state.requests)
