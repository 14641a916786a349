"""The Kong Admin API adapter over real HTTP, against the development gateway's Admin API (which
mirrors Kong 3.x's shapes: tags, 409 on a duplicate plugin, paging, workspaces, RBAC token)."""
import pytest

from chalicelib.core.errors import GatewayError, GatewayServiceNotFound
from chalicelib.enforce import kong_admin
from chalicelib.enforce.kong_admin import KongAdmin
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
    found = kong.list_our_plugins()
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
