"""The development gateway's Kong exposition, line by line for each schema, its stats, its config,
and key-auth consumers."""
import pytest

from localrun.devgateway import (DEMO_CONFIG, Consumer, DevGateway, GatewayConfig, InMemoryStats, KeyAuth,
                                 KongMetrics, Route, authenticate, consumer_id, load_config)


@pytest.fixture
def metrics():
    m = KongMetrics()
    m.record("pay", "checkout", 200, 150, 2000, 12.0, 10.0, 2.0)
    m.record("pay", "checkout", 502, 100, 300, 80.0, 79.0, 1.0)
    return m


def lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_kong_37_bandwidth_and_requests_carry_workspace(metrics):
    text = metrics.render("3.7")
    assert lines(text, "kong_bandwidth_bytes") == [
        'kong_bandwidth_bytes{service="pay",route="checkout",direction="egress",workspace="default",consumer=""} 2300',
        'kong_bandwidth_bytes{service="pay",route="checkout",direction="ingress",workspace="default",consumer=""} 250',
    ]
    assert lines(text, "kong_http_requests_total") == [
        'kong_http_requests_total{service="pay",route="checkout",code="200",source="service",workspace="default",consumer=""} 1',
        'kong_http_requests_total{service="pay",route="checkout",code="502",source="service",workspace="default",consumer=""} 1',
    ]
    assert "# TYPE kong_bandwidth_bytes counter" in text and "# TYPE kong_request_latency_ms histogram" in text


def test_kong_30_has_no_workspace_label(metrics):
    text = metrics.render("3.0")
    assert lines(text, "kong_bandwidth_bytes")[0] == \
        'kong_bandwidth_bytes{service="pay",route="checkout",direction="egress",consumer=""} 2300'
    assert "workspace" not in text


def test_kong_2_uses_the_old_names_and_type_label(metrics):
    text = metrics.render("2")
    assert lines(text, "kong_bandwidth{") == [
        'kong_bandwidth{service="pay",route="checkout",type="egress"} 2300',
        'kong_bandwidth{service="pay",route="checkout",type="ingress"} 250',
    ]
    assert lines(text, "kong_http_status") == [
        'kong_http_status{service="pay",route="checkout",code="200"} 1',
        'kong_http_status{service="pay",route="checkout",code="502"} 1',
    ]
    assert 'kong_latency_bucket{service="pay",route="checkout",type="request",le="00050.0"} 1' in text


def test_latency_histogram_is_cumulative_with_count_and_sum(metrics):
    text = metrics.render("3.7")
    request = [line for line in lines(text, "kong_request_latency_ms") if 'route="checkout"' in line]
    assert 'kong_request_latency_ms_bucket{service="pay",route="checkout",workspace="default",le="00010.0"} 0' in request
    assert 'kong_request_latency_ms_bucket{service="pay",route="checkout",workspace="default",le="00020.0"} 1' in request
    assert 'kong_request_latency_ms_bucket{service="pay",route="checkout",workspace="default",le="+Inf"} 2' in request
    assert 'kong_request_latency_ms_count{service="pay",route="checkout",workspace="default"} 2' in request
    assert 'kong_request_latency_ms_sum{service="pay",route="checkout",workspace="default"} 92' in request


def test_label_values_are_escaped():
    m = KongMetrics()
    m.set_bandwidth('a "quoted"\\ name\nx', "r", "egress", 5)
    assert 'service="a \\"quoted\\"\\\\ name\\nx"' in m.render("3.7")


def test_reset_is_a_node_restart():
    m = KongMetrics()
    m.record("pay", "r", 200, 1, 2, 1.0)
    m.reset()
    assert lines(m.render("3.7"), "kong_bandwidth_bytes") == []


def test_stats_quantiles_are_nearest_rank():
    stats = InMemoryStats()
    for ms in range(1, 101):
        stats.record(200 if ms <= 90 else 503, float(ms))
    assert stats.snapshot() == {"requests_count": {"success": 90, "error": 10},
                                "latency_ms": {"average": 50.5, "p95": 95.0, "p99": 99.0}}


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("schema: '4'\n")
    with pytest.raises(ValueError, match="schema"):
        load_config(str(path))
    path.write_text("routes:\n  - {path_prefix: /a, service: s, route: r}\n")
    with pytest.raises(ValueError, match=r"routes\[0\] lacks upstream"):
        load_config(str(path))


# -- consumers (issue 24): key-auth and the consumer label ------------------------------------
# What Kong 3.7+ prints with per_consumer and bandwidth_metrics on (exporter.lua: labels service,
# route, direction, workspace, consumer; the username as consumer; "" without one), written for
# these requests; the dev gateway must print exactly this block.
KONG_37_BANDWIDTH = """\
# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes
# TYPE kong_bandwidth_bytes counter
kong_bandwidth_bytes{service="mock-service",route="http-route",direction="egress",workspace="default",consumer=""} 700
kong_bandwidth_bytes{service="mock-service",route="http-route",direction="egress",workspace="default",consumer="alice"} 3000
kong_bandwidth_bytes{service="mock-service",route="http-route",direction="ingress",workspace="default",consumer=""} 90
kong_bandwidth_bytes{service="mock-service",route="http-route",direction="ingress",workspace="default",consumer="alice"} 300
"""


@pytest.fixture
def with_consumers():
    m = KongMetrics()
    m.record("mock-service", "http-route", 200, 100, 1000, 5.0, consumer="alice")
    m.record("mock-service", "http-route", 200, 200, 2000, 5.0, consumer="alice")
    m.record("mock-service", "http-route", 401, 90, 700, 1.0, consumer="", source="kong")
    return m


def block(text, metric):
    """The metric's lines from its # HELP up to the next metric's."""
    all_lines = text.splitlines()
    start = next(i for i, line in enumerate(all_lines) if line.startswith(f"# HELP {metric} "))
    end = next((i for i in range(start + 1, len(all_lines)) if all_lines[i].startswith("# HELP")), len(all_lines))
    return "\n".join(all_lines[start:end]) + "\n"


def test_kong_37_bandwidth_per_consumer_is_exactly_kongs_shape(with_consumers):
    assert block(with_consumers.render("3.7"), "kong_bandwidth_bytes") == KONG_37_BANDWIDTH


def test_kong_37_requests_carry_consumer_and_who_answered(with_consumers):
    assert lines(with_consumers.render("3.7"), "kong_http_requests_total") == [
        'kong_http_requests_total{service="mock-service",route="http-route",code="200",source="service",'
        'workspace="default",consumer="alice"} 2',
        'kong_http_requests_total{service="mock-service",route="http-route",code="401",source="kong",'
        'workspace="default",consumer=""} 1',
    ]


def test_kong_30_carries_the_consumer_without_workspace(with_consumers):
    assert lines(with_consumers.render("3.0"), "kong_bandwidth_bytes") == [
        'kong_bandwidth_bytes{service="mock-service",route="http-route",direction="egress",consumer=""} 700',
        'kong_bandwidth_bytes{service="mock-service",route="http-route",direction="egress",consumer="alice"} 3000',
        'kong_bandwidth_bytes{service="mock-service",route="http-route",direction="ingress",consumer=""} 90',
        'kong_bandwidth_bytes{service="mock-service",route="http-route",direction="ingress",consumer="alice"} 300',
    ]


def test_kong_2_has_no_consumer_so_consumers_add_up_to_one_series(with_consumers):
    text = with_consumers.render("2")
    assert lines(text, "kong_bandwidth{") == [
        'kong_bandwidth{service="mock-service",route="http-route",type="egress"} 3700',
        'kong_bandwidth{service="mock-service",route="http-route",type="ingress"} 390',
    ]
    assert lines(text, "kong_http_status") == [
        'kong_http_status{service="mock-service",route="http-route",code="200"} 2',
        'kong_http_status{service="mock-service",route="http-route",code="401"} 1',
    ]


def test_the_demo_config_has_three_consumers_with_keys_and_anonymous_traffic():
    config = load_config(DEMO_CONFIG, {"UPSTREAM_URL": "http://upstream"})
    assert [(c.username, c.keys) for c in config.consumers] == [
        ("acme-mobile", ("acme-mobile-demo-key",)), ("globex-web", ("globex-web-demo-key",)),
        ("initech-batch", ("initech-batch-demo-key",))]
    assert config.per_consumer is True
    assert {(p.service, p.route, p.key_names) for p in config.key_auth} == {
        ("payments-api", None, ("apikey",)), ("search-api", None, ("apikey",))}
    senders = {m["path"]: m["senders"] for m in config.traffic["mix"]}
    assert senders["/media"] == []  # media-cdn has no key-auth: anonymous
    assert senders["/search"] == [("acme-mobile", "acme-mobile-demo-key"), ("globex-web", "globex-web-demo-key"),
                                  ("initech-batch", "initech-batch-demo-key")]
    keyed = {r.path_prefix for r in config.routes if config.key_auth_for(r)}
    assert all(senders[p] for p in keyed)  # a keyed route is never sent to without a key


def test_consumer_config_parses_kongs_declarative_shape(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("""
per_consumer: false
routes:
  - {path_prefix: /a, upstream: http://u/, service: s, route: r}
  - {path_prefix: /b, upstream: http://u/, service: s, route: other}
plugins:
  - {name: key-auth}
  - {name: key-auth, route: r, config: {key_names: [x-key, apikey], key_in_query: false}}
consumers:
  - {username: alice, custom_id: A-1, keyauth_credentials: [{key: k1}, {key: k2}]}
  - {username: bob}
""")
    config = load_config(str(path))
    assert config.per_consumer is False
    assert config.consumers == [Consumer("alice", ("k1", "k2"), "A-1"), Consumer("bob")]
    assert config.key_auth_for(config.routes[0]) == KeyAuth(None, "r", ("x-key", "apikey"), True, False)
    assert config.key_auth_for(config.routes[1]) == KeyAuth()  # the global one
    assert config.consumers[0].id == consumer_id("alice") != consumer_id("bob")


@pytest.mark.parametrize("text, error", [
    ("consumers:\n  - {custom_id: x}\n", r"consumers\[0\] lacks username"),
    ("consumers:\n  - {username: a}\n  - {username: a}\n", r"consumers\[1\]: username 'a' is given twice"),
    ("consumers:\n  - {username: a, keyauth_credentials: [{key: k}]}\n"
     "  - {username: b, keyauth_credentials: [{key: k}]}\n", r"key 'k' already belongs to another consumer"),
    ("consumers:\n  - {username: a, keyauth_credentials: [{}]}\n", r"every credential needs a key"),
    ("plugins:\n  - {name: basic-auth}\n", r"plugins\[0\]: only key-auth is supported"),
    ("plugins:\n  - {name: key-auth, service: ghost}\n", r"no route has service 'ghost'"),
    ("plugins:\n  - {name: key-auth, config: {hide_credentials: true}}\n", r"unsupported hide_credentials"),
    ("plugins:\n  - {name: key-auth, config: {key_names: []}}\n", r"key_names must be a list"),
    ("per_consumer: maybe\n", r"per_consumer must be true or false"),
    ("traffic:\n  mix:\n    - {path: /a, consumers: [nobody]}\n", r"traffic.mix\[0\]: no consumer with a key named nobody"),
])
def test_consumer_config_errors_name_the_field(tmp_path, text, error):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        load_config(str(path))


ALICE = Consumer("alice", ("alice-key",))
KEYED = Route("/pay", "http://u", "pay", "checkout")
OPEN = Route("/media", "http://u", "media", "assets")


def keyed_config(schema="3.7", **key_auth):
    return GatewayConfig(schema, [KEYED, OPEN], consumers=[ALICE, Consumer("bob", ("bob-key",))],
                         key_auth=[KeyAuth(service="pay", **key_auth)])


@pytest.mark.parametrize("headers, query, who", [
    ([("apikey", "alice-key")], "", "alice"),
    ([("ApiKey", "alice-key")], "", "alice"),  # header names are case-insensitive
    ([], "size=1&apikey=bob-key", "bob"),  # then the query argument
    ([("apikey", "alice-key")], "apikey=bob-key", "alice"),  # the header first
])
def test_key_auth_finds_the_consumer_by_header_then_query(headers, query, who):
    consumer, refusal = authenticate(keyed_config(), KEYED, headers, query)
    assert refusal is None and consumer.username == who


@pytest.mark.parametrize("schema, headers, query, message, challenge", [
    ("3.7", [], "", "No API key found in request", "Key"),
    ("3.7", [("apikey", "")], "apikey=alice-key", "No API key found in request", "Key"),  # empty header: no key
    ("3.7", [("apikey", "stolen")], "", "Unauthorized", "Key"),  # Kong 3.6+
    ("3.0", [("apikey", "stolen")], "", "Invalid authentication credentials", ""),  # Kong up to 3.5
    ("3.0", [], "", "No API key found in request", 'Key realm="kong"'),
    ("3.7", [], "apikey=alice-key&apikey=bob-key", "Duplicate API key found", "Key"),
    ("3.7", [("apikey", "alice-key"), ("apikey", "bob-key")], "", "Duplicate API key found", "Key"),
])
def test_key_auth_refuses_as_kong_words_it(schema, headers, query, message, challenge):
    consumer, refusal = authenticate(keyed_config(schema), KEYED, headers, query)
    assert consumer is None and (refusal.message, refusal.www_authenticate) == (message, challenge)


def test_a_route_without_key_auth_is_anonymous_even_with_a_key():
    assert authenticate(keyed_config(), OPEN, [("apikey", "alice-key")], "") == (None, None)


def test_key_names_and_where_to_look_are_the_plugins_config():
    config = keyed_config(key_names=("x-key",), key_in_query=False)
    assert authenticate(config, KEYED, [("X-Key", "bob-key")], "")[0].username == "bob"
    assert authenticate(config, KEYED, [("apikey", "bob-key")], "x-key=bob-key")[1].message == \
        "No API key found in request"


def test_per_consumer_off_labels_every_request_anonymous():
    config = keyed_config()
    assert DevGateway(config).consumer_label(ALICE) == "alice"
    config.per_consumer = False
    assert DevGateway(config).consumer_label(ALICE) == ""
    assert DevGateway(keyed_config()).consumer_label(None) == ""
