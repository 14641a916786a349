"""Enforcement end to end over real HTTP: the scheduled run (collect, then reconcile) reconciles
the development gateway's Kong Admin API (its own port) against the quotas in a moto server, and
the gateway honours the request-termination plugin it is given. The clock is fixed (each run's
``now``)."""
import json

import pytest
import requests
from chalice.test import Client

from chalicelib import schedule
from chalicelib.enforce.kong_admin import KongAdmin
from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig, Route
from localrun.kongadmin import AdminServer, AdminState
from tests.fakes.mailer import RecordingMailer
from tests.fakes.prometheus import FakePrometheus
from tests.support.streams import alerts_poller, drain

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
T0 = DEC1 - 20 * 60
TAG = "bandwidth-meter"


def labels(service):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": "egress",
            "consumer": "", "workspace": "default", "instance": "n1"}


@pytest.fixture
def kong():
    """The development gateway (services pay and media) and its Admin API, on 127.0.0.1."""
    upstream = DemoUpstream().start()
    state = AdminState(["pay", "media"])
    admin = AdminServer(state).start()
    gateway = DevGateway(GatewayConfig(routes=[Route("/pay", upstream.url, "pay", "r"),
                                               Route("/media", upstream.url, "media", "r")]), admin=state).start()
    yield type("Kong", (), {"state": state, "admin_url": admin.url, "proxy_url": gateway.url})
    for server in (gateway, admin, upstream):
        server.stop()


@pytest.fixture
def world(aws_server, config, kong):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=1, KONG_ADMIN_URL=kong.admin_url)
    prom, mailer = FakePrometheus(), RecordingMailer()
    admin = KongAdmin(kong.admin_url, timeout=0.5, sleep=lambda s: None)
    now = {"t": T0}  # the API reads the same fixed clock as the runs: the data lives in Nov 2026
    deps = config.start(clock=lambda: now["t"], prometheus=prom, mailer=mailer, kong_admin=admin)
    for service in ("pay", "media", "ghost"):
        prom.add(labels(service), [(T0 - 30, 0)])

    class World:
        state = kong.state
        admin_url = kong.admin_url
        book = deps.quotas
        sent = mailer.sent
        totals = {}

        @staticmethod
        def minute(n, per_service=None):
            """Traffic in minute T0+n (bytes per service), then the scheduled run: collect, then reconcile."""
            for service, nbytes in (per_service or {}).items():
                World.totals[service] = World.totals.get(service, 0) + nbytes
                prom.add(labels(service), [(T0 + 60 * n + 30, World.totals[service])])
            now["t"] = T0 + 60 * (n + 1)
            return schedule.scheduled_run(deps, shard=0)

        @staticmethod
        def ours(service=None):
            plugins = [p for p in kong.state.plugins.values() if TAG in (p["tags"] or [])]
            if service is None:
                return plugins
            sid = kong.state.service(service)["id"]
            return [p for p in plugins if p["service"]["id"] == sid]

        @staticmethod
        def proxy(path):
            return requests.get(f"{kong.proxy_url}{path}?size=100", timeout=5)

        @staticmethod
        def api(path):
            import app

            with Client(app.app, stage_name="local") as client:
                answer = client.http.get(path)
            assert answer.status_code == 200, answer.body
            return json.loads(answer.body)

        @staticmethod
        def posts():
            return [r for r in kong.state.requests if r[0] == "POST"]

    World.prom, World.mailer = prom, mailer
    World.book.put("pay", {"limit_bytes": 10_000, "action": "reject", "notify": ["pay-owner@example.com"]})
    return World


@pytest.fixture
def alerts(world, moto_server, aws_server):
    """The alerts function fed the table's stream (it sends the block notices): call after runs."""
    poller = alerts_poller(moto_server, aws_server.table_name)
    return lambda: drain(poller)


def block_pay(world):
    world.minute(0, {"pay": 6_000})
    assert world.ours("pay") == []
    world.minute(1, {"pay": 5_000})


def test_a_service_crossing_reject_at_gets_exactly_one_tagged_plugin_and_then_429s(world):
    block_pay(world)
    [plugin] = world.ours("pay")
    assert plugin["name"] == "request-termination" and plugin["tags"] == [TAG]
    assert plugin["config"]["status_code"] == 429
    answer = world.proxy("/pay")
    assert answer.status_code == 429
    assert "Bandwidth quota exceeded: pay reached 100% of its monthly quota" in answer.json()["message"]
    assert "2026-12-01T00:00:00Z" in answer.json()["message"]
    assert world.proxy("/media").status_code == 200


def test_repeated_reconciles_change_nothing(world):
    block_pay(world)
    posts = len(world.posts())
    world.minute(2)
    world.minute(3)
    assert len(world.ours("pay")) == 1 and len(world.posts()) == posts


def test_reject_at_blocks_below_the_limit(world):
    world.book.put("pay", {"limit_bytes": 10_000, "action": "reject", "reject_at": 50})
    world.minute(0, {"pay": 5_000})
    assert len(world.ours("pay")) == 1


def test_a_warn_quota_never_blocks(world):
    world.book.put("pay", {"limit_bytes": 10_000})
    world.minute(0, {"pay": 20_000})
    assert world.ours() == [] and world.proxy("/pay").status_code == 200


def test_a_raised_limit_lifts_the_block_without_traffic(world):
    block_pay(world)
    world.book.put("pay", {"limit_bytes": 100_000, "action": "reject"})
    world.minute(2)
    assert world.ours() == [] and world.proxy("/pay").status_code == 200


def test_a_new_period_lifts_the_block_without_traffic(world):
    block_pay(world)
    world.minute(18)  # the run at 23:59 on November 30th: still blocked
    assert len(world.ours("pay")) == 1
    world.minute(19)  # the run at 00:00 on December 1st
    assert world.ours() == [] and world.proxy("/pay").status_code == 200


def test_the_owners_hear_the_block_ended_because_a_new_period_began(world, alerts):
    block_pay(world)
    world.minute(19)
    alerts()
    [lifted] = [m for m in world.sent if m["subject"] == "[Bandwidth Meter] pay is no longer blocked"]
    assert "a new quota period began" in lifted["text"] and lifted["to"] == ["pay-owner@example.com"]


def test_a_block_lifts_on_time_even_when_prometheus_is_down(world):
    from chalicelib.collect.collector import CollectorRunFailed

    block_pay(world)
    world.prom.fail_with = "Prometheus unreachable"
    with pytest.raises(CollectorRunFailed):
        world.minute(19)
    assert world.ours() == [] and world.proxy("/pay").status_code == 200


def test_a_deleted_quota_lifts_the_block(world):
    block_pay(world)
    world.book.delete("pay")
    world.minute(2)
    assert world.ours() == []


def test_action_warn_lifts_the_block(world):
    block_pay(world)
    world.book.put("pay", {"limit_bytes": 10_000, "action": "warn"})
    world.minute(2)
    assert world.ours() == []


def test_a_plugin_deleted_by_hand_is_restored_at_the_next_reconcile(world):
    block_pay(world)
    [plugin] = world.ours("pay")
    assert requests.delete(f"{world.admin_url}/plugins/{plugin['id']}", timeout=5).status_code == 204
    assert world.proxy("/pay").status_code == 200
    world.minute(2)
    [restored] = world.ours("pay")
    assert restored["id"] != plugin["id"] and world.proxy("/pay").status_code == 429


def test_owners_are_told_once_when_the_block_starts_and_once_when_it_ends(world, alerts):
    block_pay(world)
    alerts()
    world.state.delete_plugin(world.ours("pay")[0]["id"])  # restored: no second email
    world.minute(2)
    world.minute(3)
    alerts()
    world.book.put("pay", {"limit_bytes": 100_000, "action": "reject", "notify": ["pay-owner@example.com"]})
    world.minute(4)
    alerts()
    world.minute(5)
    alerts()
    subjects = [m["subject"] for m in world.sent if "block" in m["subject"]]
    assert subjects == ["[Bandwidth Meter] pay is blocked: it reached 100% of its quota",
                        "[Bandwidth Meter] pay is no longer blocked"]
    assert "429" in world.sent[[m["subject"] for m in world.sent].index(subjects[0])]["text"]
    assert "the limit was raised" in world.sent[-1]["text"]


def test_a_block_ended_notice_that_failed_goes_out_at_a_later_run_once(world, alerts):
    block_pay(world)
    alerts()
    world.book.put("pay", {"limit_bytes": 100_000, "action": "reject", "notify": ["pay-owner@example.com"]})
    world.mailer.failures_left = 3  # SES refuses every attempt the stream makes at this record (3)
    world.minute(2)
    alerts()
    assert world.ours("pay") == [] and not [m for m in world.sent if "no longer blocked" in m["subject"]]
    world.minute(3)  # the next state record still offers the notice: the alerts function sends it
    alerts()
    world.minute(4)
    alerts()
    ended = [m for m in world.sent if m["subject"] == "[Bandwidth Meter] pay is no longer blocked"]
    assert len(ended) == 1 and "the limit was raised" in ended[0]["text"]


def test_kong_answering_5xx_is_retried_without_duplicates(world):
    world.state.fail_next(2, status=503)
    block_pay(world)
    assert len(world.ours("pay")) == 1
    assert world.api("/v1/collector/status")["enforcement"]["last_error"] is None


def test_a_create_whose_answer_was_lost_is_not_repeated(world):
    world.state.lose_next_create()  # Kong creates the plugin and the 201 never arrives: a 500 instead
    block_pay(world)
    assert len(world.ours("pay")) == 1
    assert [method for method, _ in world.posts()] == ["POST", "POST"]  # the retry met a 409
    assert world.api("/v1/collector/status")["enforcement"]["blocked"] == ["pay"]


def test_kong_timing_out_is_retried_without_duplicates(world):
    world.state.fail_next(1, delay=1.0)  # the client gives up after 0.5 s
    block_pay(world)
    assert len(world.ours("pay")) == 1


def test_kong_down_is_shown_in_the_status_and_never_fails_the_run(world):
    world.state.fail_next(50, status=500)
    world.minute(0, {"pay": 6_000})
    report = world.minute(1, {"pay": 5_000})
    assert report["status"] == "ok" and report["enforcement"]["errors"]
    status = world.api("/v1/collector/status")["enforcement"]
    assert "HTTP 500" in status["last_error"] and status["blocked_count"] == 0
    world.state.clear_faults()
    world.minute(2)
    assert len(world.ours("pay")) == 1
    assert world.api("/v1/collector/status")["enforcement"]["last_error"] is None


def test_a_kong_service_that_does_not_exist_is_reported_not_fatal(world):
    world.book.put("ghost", {"limit_bytes": 1_000, "action": "reject"})
    world.minute(0, {"ghost": 5_000, "pay": 6_000})
    report = world.minute(1, {"pay": 5_000})
    assert report["status"] == "ok"
    assert report["enforcement"]["missing"][0]["service"] == "ghost"
    assert len(world.ours("pay")) == 1
    status = world.api("/v1/collector/status")["enforcement"]
    assert status["missing_services"] == ["ghost"] and "ghost" in status["last_error"]


def test_the_listing_shows_what_is_blocked_why_and_a_deck_file(world):
    block_pay(world)
    listing = world.api("/v1/enforcement")
    [blocked] = listing["blocked"]
    assert blocked["service"] == "pay" and blocked["usage_bytes"] == 11_000 and blocked["limit_bytes"] == 10_000
    assert blocked["at_gateway"] is True and blocked["plugin_id"] == world.ours("pay")[0]["id"]
    assert listing["mode"] == "admin-api"
    [plugin] = listing["deck"]["plugins"]
    assert plugin == {"name": "request-termination", "service": "pay", "tags": [TAG],
                      "config": {"status_code": 429, "message": world.ours("pay")[0]["config"]["message"]}}


def test_the_reconcile_sends_nothing_itself_the_alerts_function_tells_the_owners(world, alerts):
    block_pay(world)
    assert not [m for m in world.sent if "blocked" in m["subject"]]  # the collector's role sends no email
    alerts()
    [started] = [m for m in world.sent if m["subject"] == "[Bandwidth Meter] pay is blocked: it reached 100% of its quota"]
    assert started["to"] == ["pay-owner@example.com"] and "429" in started["text"]
