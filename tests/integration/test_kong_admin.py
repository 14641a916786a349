"""The Kong Admin API adapter over real HTTP, against the development gateway's Admin API (which
mirrors Kong 3.x's shapes: tags, 409 on a duplicate plugin, paging, workspaces, RBAC token)."""
import pytest

from chalicelib.core.errors import GatewayError, GatewayServiceNotFound
from chalicelib.enforce import kong_admin
from chalicelib.enforce.kong_admin import KongAdmin, NotAServiceName
from chalicelib.enforce.kong_plugin import TAG
from localrun.kongadmin import AdminServer, AdminState


@pytest.fixture
def admin():
    servers = []

    def start(services=("pay",), **options):
        state = AdminState(services, **options)
        server = AdminServer(state).start()
        servers.append(server)
        return state, server.url

    yield start
    for server in servers:
        server.stop()


def client(url, **options):
    return KongAdmin(url, timeout=0.5, sleep=lambda s: None, **options)


def test_block_posts_a_tagged_request_termination_plugin_once(admin):
    state, url = admin()
    kong = client(url)
    first = kong.block("pay", "over quota")
    assert kong.block("pay", "over quota") == first
    [plugin] = state.plugins.values()
    assert plugin["name"] == "request-termination" and plugin["tags"] == ["bandwidth-meter"]
    assert plugin["config"] == {"status_code": 429, "message": "over quota"}
    assert [m for m, _ in state.requests].count("POST") == 1


def test_list_our_plugins_names_each_service_and_ignores_plugins_not_ours(admin, monkeypatch):
    monkeypatch.setattr(kong_admin, "PAGE_SIZE", 2)  # three pages
    services = [f"svc-{i}" for i in range(5)]
    state, url = admin(services)
    kong = client(url)
    for name in services:
        kong.block(name, f"{name} is over")
    state.create_plugin(state.service("svc-0"), {"name": "rate-limiting", "config": {}, "tags": ["team-a"]})
    found = kong.list_our_plugins().blocks
    assert sorted(p.service for p in found) == services
    assert {p.message for p in found} == {f"{name} is over" for name in services}


def test_unblock_deletes_and_a_gone_plugin_is_fine(admin):
    state, url = admin()
    kong = client(url)
    plugin_id = kong.block("pay", "over")
    kong.unblock(plugin_id)
    kong.unblock(plugin_id)
    assert state.plugins == {}


def test_a_request_termination_plugin_added_by_hand_is_left_alone_and_reported(admin):
    state, url = admin()
    state.create_plugin(state.service("pay"), {"name": "request-termination", "config": {"status_code": 503}})
    with pytest.raises(GatewayError, match="not tagged bandwidth-meter"):
        client(url).block("pay", "over")
    assert len(state.plugins) == 1


def test_an_unknown_service_is_its_own_error(admin):
    _, url = admin()
    with pytest.raises(GatewayServiceNotFound, match="ghost"):
        client(url).block("ghost", "over")


def test_the_workspace_prefixes_every_path_and_the_token_is_sent(admin):
    state, url = admin(workspace="team-a", token="s3cret")
    client(url, workspace="team-a", token="s3cret").block("pay", "over")
    assert len(state.plugins) == 1
    assert all(path.startswith("/team-a/") for _, path in state.requests)


def test_a_wrong_token_is_refused_without_retrying(admin):
    state, url = admin(token="s3cret")
    with pytest.raises(GatewayError, match="HTTP 401"):
        client(url, token="wrong").block("pay", "over")
    assert len(state.requests) == 1


def test_kong_failing_every_attempt_is_one_error_after_three_attempts(admin):
    state, url = admin()
    state.fail_next(10, status=502)
    with pytest.raises(GatewayError, match="after 3 attempts: HTTP 502"):
        client(url).list_our_plugins()
    assert len(state.requests) == 3


# -- names are attacker-controlled: a name never addresses anything but the service it names --------
def pay_id(state):
    return state.service("pay")["id"]


def test_the_fake_resolves_dot_segments_as_kong_does_so_services_dot_dot_plugins_is_a_global_plugin(admin):
    import requests

    state, url = admin(["pay", ".."])
    answer = requests.post(f"{url}/services/../plugins", timeout=5,
                           json={"name": "request-termination", "config": {"status_code": 429}, "tags": [TAG]})
    assert answer.status_code == 201 and answer.json()["service"] is None
    assert [p["id"] for p in state.global_plugins()] == [answer.json()["id"]]


@pytest.mark.parametrize("name", ["..", "."])
def test_a_service_named_dot_or_dot_dot_is_refused_unsent_and_never_makes_a_global_plugin(admin, name):
    state, url = admin(["pay", name])
    kong = client(url)
    with pytest.raises(NotAServiceName, match="not a Kong service name"):
        kong.block(name, "over")
    assert state.requests == [] and state.plugins == {}


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "a%2e", "a?b", "a#b", "a b", "a\nb", "a\x00b", "a;b", ":b", "a:", "a/x:b",
                                  "..:b",
                                  "a'b", "a\u2028b", "a\u200bb", "a\u00a0b"])
def test_names_a_url_or_proxy_would_rewrite_are_never_sent(admin, name):
    state, url = admin(["pay"])
    with pytest.raises(NotAServiceName):
        client(url).block(name, "over")
    assert state.requests == []


def test_a_name_that_is_another_services_id_does_not_touch_that_service(admin):
    state, url = admin(["pay"])
    impostor = pay_id(state)
    state.add_service(impostor)  # a service *named* like pay's id: Kong reads that key as an id
    with pytest.raises(GatewayServiceNotFound, match="no service named"):
        client(url).block(impostor, "over")
    assert state.plugins == {}
    assert state.requests == [("GET", f"/services/{impostor}")]


def test_every_service_path_after_the_lookup_names_the_services_id(admin):
    state, url = admin(["pay~1.v2"])
    sid = state.service("pay~1.v2")["id"]
    client(url).block("pay~1.v2", "over")
    assert state.requests == [("GET", "/services/pay~1.v2"), ("GET", f"/services/{sid}/plugins"),
                              ("POST", f"/services/{sid}/plugins")]
    [plugin] = state.plugins.values()
    assert plugin["service"] == {"id": sid} and state.global_plugins() == []


def test_a_lookup_answered_with_another_name_is_not_found(admin, monkeypatch):
    state, url = admin(["pay", "media"])
    real = state.service
    monkeypatch.setattr(state, "service", lambda key: real("media") if key == "pay" else real(key))
    with pytest.raises(GatewayServiceNotFound):
        client(url).block("pay", "over")
    assert state.plugins == {}


def test_plugins_tagged_ours_that_are_not_exactly_ours_are_drift(admin):
    state, url = admin(["pay", "media"])
    kong = client(url)
    ours = kong.block("pay", "over")
    body = {"name": "request-termination", "config": {"status_code": 429}, "tags": [TAG]}
    _, everywhere = state.create_plugin(None, body)
    _, on_route = state.create_plugin(None, body, route="9b1b1e0c-2b7a-4d5e-9a44-1a2b3c4d5e6f")
    _, on_consumer = state.create_plugin(state.service("media"), body, consumer="1d2c3b4a-0000-4000-8000-000000000001")
    _, other = state.create_plugin(state.service("media"), {"name": "rate-limiting", "config": {}, "tags": [TAG]})
    state.create_plugin(state.service("media"), {"name": "cors", "config": {}, "tags": ["team-a"]})
    found = kong.list_our_plugins()
    assert [p.id for p in found.blocks] == [ours]
    assert {d.id: d.why for d in found.drift} == {
        everywhere["id"]: "global (no service): it blocks the whole gateway",
        on_route["id"]: "scoped to a route", on_consumer["id"]: "scoped to a consumer",
        other["id"]: "a rate-limiting plugin"}


def test_a_plugin_id_that_is_not_a_uuid_is_never_put_in_a_path(admin):
    state, url = admin()
    with pytest.raises(GatewayError, match="not a UUID"):
        client(url).unblock("../services/pay")
    assert state.requests == []


def test_the_token_never_follows_a_redirect_to_another_host(admin):
    state, url = admin(token="s3cret")
    other, other_url = admin(token=None)
    state.redirect_next(other_url.replace("127.0.0.1", "localhost") + "/plugins")
    with pytest.raises(GatewayError, match="redirect .*to localhost"):
        client(url, token="s3cret").list_our_plugins()
    assert len(state.requests) == 1 and other.requests == []


def test_a_global_request_termination_blocks_every_service_at_the_dev_gateway(admin):
    import requests

    from localrun.devgateway import DemoUpstream, DevGateway, GatewayConfig, Route

    state, url = admin(["pay", "media"])
    upstream = DemoUpstream().start()
    gateway = DevGateway(GatewayConfig(routes=[Route("/pay", upstream.url, "pay", "r"),
                                               Route("/media", upstream.url, "media", "r")]), admin=state).start()
    try:
        assert requests.get(f"{gateway.url}/media", timeout=5).status_code == 200
        state.create_plugin(None, {"name": "request-termination", "config": {"status_code": 503}})
        assert [requests.get(f"{gateway.url}{p}", timeout=5).status_code for p in ("/pay", "/media")] == [503, 503]
        state.create_plugin(state.service("pay"), {"name": "request-termination", "config": {"status_code": 429}})
        assert requests.get(f"{gateway.url}/pay", timeout=5).status_code == 429  # the service's own wins
    finally:
        gateway.stop()
        upstream.stop()


def test_a_non_ascii_name_kong_allows_is_looked_up_percent_encoded_and_blocked(admin):
    state, url = admin(["zahlung-ü"])
    client(url).block("zahlung-ü", "over")
    assert state.requests[0] == ("GET", "/services/zahlung-%C3%BC")
    [plugin] = state.plugins.values()
    assert plugin["service"] == {"id": state.service("zahlung-ü")["id"]}


def test_a_lookup_kong_refuses_as_a_bad_key_is_not_found_and_not_a_failure(admin):
    state, url = admin(["pay"])
    state.fail_next(1, status=400)
    with pytest.raises(GatewayServiceNotFound):
        client(url).block("pay", "over")
    assert len(state.requests) == 1 and state.plugins == {}
