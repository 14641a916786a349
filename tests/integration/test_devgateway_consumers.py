"""Consumers at the development gateway over real HTTP (issue 24, the gateway side): key-auth as
Kong's, bandwidth per consumer scraped by the real Prometheus exactly as sent on the wire, the
Admin API's consumers, and a consumer-scoped request-termination that blocks that consumer only."""
import socket
import time

import pytest
import requests

from localrun.devgateway import (DEMO_CONFIG, Consumer, DemoUpstream, DevGateway, GatewayConfig, KeyAuth, Route,
                                 load_config)
from localrun.kongadmin import AdminServer, AdminState
from localrun.traffic import TrafficGenerator

TAG = "bandwidth-meter"
KEYS = {"acme-mobile": "acme-key", "globex-web": "globex-key", "initech-batch": "initech-key"}


def eventually(predicate, timeout=5.0):
    """Like Kong's log phase, the gateway counts a request just after answering it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def logged(gateway):
    return sum(gateway.metrics.requests.values())


@pytest.fixture
def world():
    """Services pay and search want a key (key-auth on each), media is open; three consumers."""
    upstream = DemoUpstream().start()
    state = AdminState(["pay", "search", "media"])
    admin = AdminServer(state).start()
    config = GatewayConfig("3.7", [Route("/pay", upstream.url, "pay", "checkout"),
                                   Route("/search", upstream.url, "search", "query"),
                                   Route("/media", upstream.url, "media", "assets")],
                           consumers=[Consumer(name, (key,)) for name, key in KEYS.items()],
                           key_auth=[KeyAuth(service="pay"), KeyAuth(service="search")])
    gateway = DevGateway(config, admin=state).start()
    yield gateway, state, admin.url
    for server in (gateway, admin, upstream):
        server.stop()


def on_the_wire(gateway, path, key=None):
    """One request over a raw socket: (status, bytes sent, bytes received), what Kong counts."""
    host, port = gateway.url.split("//")[1].split(":")
    request = (f"GET {path} HTTP/1.1\r\nHost: gw\r\n" + (f"apikey: {key}\r\n" if key else "")
               + "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(request)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1]), len(request), len(received)


def test_prometheus_scrapes_each_consumers_bytes_exactly(world, prometheus_factory):
    gateway, _, _ = world
    sends = [("/pay/a?size=1000", "acme-mobile"), ("/search/q?size=3000", "acme-mobile"),
             ("/pay/b?size=700", "globex-web"), ("/search/q?size=5", "initech-batch"),
             ("/search/q?size=50", "initech-batch"), ("/search/q?size=500", "initech-batch"),
             ("/media/m?size=9000", None),  # an open route: anonymous
             ("/pay/c?size=100", None)]  # no key on a keyed route: refused, still counted, anonymously
    expected = {}
    for path, consumer in sends:
        status, sent, received = on_the_wire(gateway, path, KEYS.get(consumer))
        assert status == (401 if path.startswith("/pay") and consumer is None else 200)
        for direction, n in (("ingress", sent), ("egress", received)):
            expected[(consumer or "", direction)] = expected.get((consumer or "", direction), 0) + n
    eventually(lambda: logged(gateway) == len(sends))
    prometheus = prometheus_factory.start([gateway.url.split("//")[1]], scrape_interval="1s")
    series = prometheus.wait_for_samples("sum by (consumer, direction) (kong_bandwidth_bytes)", minimum=len(expected))
    scraped = {(s["metric"].get("consumer", ""), s["metric"]["direction"]): float(s["value"][1]) for s in series}
    assert scraped == expected
    # The labels are Kong 3.7's: the consumer is the username, the workspace "default".
    acme = prometheus.wait_for_samples('kong_bandwidth_bytes{consumer="acme-mobile"}', minimum=4)
    assert {frozenset(s["metric"]) - {"__name__", "instance", "job"} for s in acme} == \
        {frozenset({"service", "route", "direction", "workspace", "consumer"})}
    assert {(s["metric"]["service"], s["metric"]["workspace"]) for s in acme} == {("pay", "default"),
                                                                                ("search", "default")}
    refused = prometheus.wait_for_samples('kong_http_requests_total{code="401"}')
    assert [(s["metric"]["service"], s["metric"]["source"], s["value"][1]) for s in refused] == [("pay", "kong", "1")]


def test_a_missing_or_wrong_key_is_refused_with_kongs_401(world):
    gateway, _, _ = world
    missing = requests.get(f"{gateway.url}/pay/x", timeout=5)
    assert (missing.status_code, missing.json()["message"], missing.headers["WWW-Authenticate"]) == \
        (401, "No API key found in request", "Key")
    wrong = requests.get(f"{gateway.url}/search/x", headers={"apikey": "acme-key-typo"}, timeout=5)
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Unauthorized")  # Kong 3.6+ wording
    assert requests.get(f"{gateway.url}/pay/x", params={"apikey": "globex-key", "size": 7}, timeout=5).content \
        == b"x" * 7  # the query argument works too, and the request is proxied
    eventually(lambda: logged(gateway) == 3)
    assert gateway.metrics.requests[("pay", "checkout", "200", "globex-web", "default", "service")] == 1


def test_per_consumer_off_labels_everything_anonymous(world):
    gateway, _, _ = world
    gateway.config.per_consumer = False
    assert requests.get(f"{gateway.url}/pay/x", headers={"apikey": "acme-key"}, timeout=5).status_code == 200
    eventually(lambda: logged(gateway) == 1)
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'consumer="acme-mobile"' not in text
    assert 'kong_bandwidth_bytes{service="pay",route="checkout",direction="egress",workspace="default",consumer=""}' \
        in text


def test_the_admin_api_knows_consumers_by_username_or_id(world):
    _, state, url = world
    acme = requests.get(f"{url}/consumers/acme-mobile", timeout=5).json()
    assert acme["username"] == "acme-mobile" and requests.get(f"{url}/consumers/{acme['id']}", timeout=5).json() == acme
    assert requests.get(f"{url}/consumers/nobody", timeout=5).status_code == 404
    unknown = requests.get(f"{url}/consumers/00000000-0000-4000-8000-000000000000", timeout=5)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not found"})
    first = requests.get(f"{url}/consumers", params={"size": 2}, timeout=5).json()
    assert [c["username"] for c in first["data"]] == ["acme-mobile", "globex-web"] and first["offset"] == "2"
    rest = requests.get(f"{url}{first['next']}", timeout=5).json()
    assert [c["username"] for c in rest["data"]] == ["initech-batch"] and rest["next"] is None


@pytest.mark.parametrize("query, message", [
    ("size=ten", "size must be a number"), ("size=0", "size must be an integer between 1 and 1000"),
    ("size=1001", "size must be an integer between 1 and 1000"), ("offset=../x", "'../x' is not a valid offset")])
def test_a_bad_page_is_kongs_400_not_a_dropped_connection(world, query, message):
    _, _, url = world
    for collection in ("consumers", "plugins", "consumers/acme-mobile/plugins"):
        answer = requests.get(f"{url}/{collection}?{query}", timeout=5)
        assert (answer.status_code, answer.json()["message"]) == (400, message)


def block(url, consumer, body):
    return requests.post(f"{url}/consumers/{consumer}/plugins", timeout=5, json={
        "name": "request-termination", "tags": [TAG], **body})


def statuses(gateway, key):
    headers = {"apikey": key} if key else {}
    return [requests.get(f"{gateway.url}{p}", headers=headers, timeout=5).status_code
            for p in ("/pay/x", "/search/x")]


def test_a_consumer_scoped_termination_blocks_that_consumer_on_every_service_only(world):
    gateway, state, url = world
    answer = block(url, "acme-mobile", {"config": {"status_code": 429, "message": "acme-mobile is over its quota"}})
    assert answer.status_code == 201
    plugin = answer.json()
    assert (plugin["consumer"], plugin["service"]) == ({"id": state.consumer("acme-mobile")["id"]}, None)
    listed = requests.get(f"{url}/plugins", params={"tags": TAG}, timeout=5).json()["data"]
    assert [p["id"] for p in listed] == [plugin["id"]]
    assert [p["id"] for p in requests.get(f"{url}/consumers/acme-mobile/plugins", timeout=5).json()["data"]] == \
        [plugin["id"]]
    refused = requests.get(f"{gateway.url}/search/x", headers={"apikey": "acme-key"}, timeout=5)
    assert (refused.status_code, refused.json()) == (429, {"message": "acme-mobile is over its quota"})
    assert statuses(gateway, "acme-key") == [429, 429]
    assert statuses(gateway, "globex-key") == [200, 200]
    assert statuses(gateway, None) == [401, 401]  # no key, no consumer: key-auth answers first
    # The refusals are logged as the consumer's traffic, answered by Kong.
    eventually(lambda: logged(gateway) == 7)
    assert gateway.metrics.requests[("search", "query", "429", "acme-mobile", "default", "kong")] == 2
    assert requests.delete(f"{url}/plugins/{plugin['id']}", timeout=5).status_code == 204
    assert statuses(gateway, "acme-key") == [200, 200]


def test_a_termination_scoped_to_a_consumer_and_a_service_blocks_there_only(world):
    gateway, state, url = world
    pay = state.service("pay")["id"]
    assert block(url, "globex-web", {"service": {"id": pay}, "config": {"status_code": 429}}).status_code == 201
    assert statuses(gateway, "globex-key") == [429, 200]
    assert statuses(gateway, "initech-key") == [200, 200]
    # The same scope through POST /plugins, by the consumer's id: Kong's unique constraint.
    initech = state.consumer("initech-batch")["id"]
    body = {"name": "request-termination", "consumer": {"id": initech}, "service": {"id": pay},
            "config": {"status_code": 403}}
    assert requests.post(f"{url}/plugins", json=body, timeout=5).status_code == 201
    assert requests.post(f"{url}/plugins", json=body, timeout=5).status_code == 409
    assert statuses(gateway, "initech-key") == [403, 200]
    ghost = requests.post(f"{url}/plugins", timeout=5, json={**body, "consumer": {"id": "00000000-0000-4000-8000-"
                                                                                    "000000000000"}})
    assert ghost.status_code == 400 and ghost.json()["name"] == "foreign key violation"
    assert block(url, "nobody", {"config": {"status_code": 429}}).status_code == 404


@pytest.mark.parametrize("scope", [{"consumer": "acme-mobile"}, {"service": "pay"}, {"route": {"name": "r"}},
                                   {"consumer": {"id": 7}}])
def test_a_scope_that_is_not_an_id_record_is_refused_never_made_global(world, scope):
    gateway, state, url = world
    for path in ("/plugins", "/consumers/globex-web/plugins"):
        answer = requests.post(f"{url}{path}", json={"name": "request-termination", **scope}, timeout=5)
        assert (answer.status_code, answer.json()["name"]) == (400, "schema violation")
    assert state.plugins == {} and statuses(gateway, "acme-key") == [200, 200]


def test_the_demo_traffic_is_sent_as_three_consumers_and_anonymously():
    upstream = DemoUpstream().start()
    config = load_config(DEMO_CONFIG, {"UPSTREAM_URL": upstream.url})
    gateway = DevGateway(config).start()
    try:
        traffic = TrafficGenerator(gateway.url, config.traffic["mix"], 100, seed=24, sleep=lambda s: None)
        traffic.run(60)
        eventually(lambda: logged(gateway) == 60)
        text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    finally:
        gateway.stop()
        upstream.stop()
    consumers = {line.split('consumer="')[1].split('"')[0] for line in text.splitlines()
                 if line.startswith("kong_bandwidth_bytes{")}
    assert consumers == {"acme-mobile", "globex-web", "initech-batch", ""}
    assert set(traffic.sent_as) == consumers and sum(traffic.sent_as.values()) == 60
    assert 'code="401"' not in text  # every keyed request carried a valid key
    anonymous = [line for line in text.splitlines() if line.startswith("kong_bandwidth_bytes{") and 'consumer=""' in line]
    assert anonymous and all('service="media-cdn"' in line for line in anonymous)
