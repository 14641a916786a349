"""Gateway schemas (GATEWAY): the setting, each gateway's series -> (service, route, direction,
consumer), Kong's workspaces kept apart, and the collector reading each schema exactly with the
configured series selector on every query (in-memory Prometheus; the real one is in
tests/integration/test_gateway_schemas_prometheus.py)."""
import pytest

from chalicelib import bootstrap
from chalicelib.collect import gateways
from chalicelib.collect.checkpoint import series_id
from chalicelib.collect.gateways import ALL_ROUTES, NO_ROUTE
from chalicelib.collect.kong import UNMATCHED_SERVICE, BandwidthKey
from chalicelib.collect.prometheus import series_key
from chalicelib.core import settings
from chalicelib.core.errors import BadSample
from tests.fakes.prometheus import FakePrometheus
from tests.support.config import build_settings
from tests.unit.test_collector import T0, collector, scrape, stored_minutes  # noqa: F401 (collector: the fixture)

KONG, APISIX, TRAEFIK, ENVOY = (gateways.GATEWAYS[n] for n in ("kong", "apisix", "traefik", "envoy"))


# -- the setting ------------------------------------------------------------------------------
def gateways_from(value):
    return build_settings(GATEWAY=value).gateways


def test_gateway_defaults_to_kong_and_takes_several_in_order_once():
    assert build_settings().gateways == ("kong",)
    assert gateways_from("apisix") == ("apisix",)
    assert gateways_from(" Traefik, kong,traefik ,envoy") == ("traefik", "kong", "envoy")


@pytest.mark.parametrize("value, named", [("nginx", "'nginx'"), ("kong,haproxy", "'haproxy'"), ("kong;apisix", "'kong;apisix'")])
def test_an_unknown_gateway_fails_naming_the_variable_and_the_choices(value, named):
    with pytest.raises(settings.ConfigError) as raised:
        gateways_from(value)
    assert str(raised.value) == ("GATEWAY must be one or more of kong, apisix, traefik, envoy (comma-separated), "
                                 f"got {named}")


# -- Kong: workspaces -------------------------------------------------------------------------
KONG37 = {"__name__": "kong_bandwidth_bytes", "service": "orders", "route": "v1", "direction": "egress"}


@pytest.mark.parametrize("workspace, service, consumer", [
    (None, "orders", "alice"),  # 3.0-3.6: no workspace label
    ("default", "orders", "alice"),  # existing data keeps its keys
    ("", "orders", "alice"),
    ("team-a", "team-a:orders", "team-a:alice"),
    ("team-b", "team-b:orders", "team-b:alice"),
])
def test_kong_qualifies_service_and_consumer_by_workspace_and_default_stays_plain(workspace, service, consumer):
    labels = {**KONG37, "consumer": "alice", **({"workspace": workspace} if workspace is not None else {})}
    assert KONG.key(labels, gateways.Source("")) == BandwidthKey(service, "v1", "egress", consumer)


def test_kong_anonymous_and_unmatched_traffic_stay_unqualified_in_any_workspace():
    key = KONG.key({**KONG37, "service": "", "consumer": "", "workspace": "team-a"}, gateways.Source(""))
    assert key == BandwidthKey(UNMATCHED_SERVICE, "v1", "egress", "")


def test_kong_series_ids_are_unchanged_so_stored_checkpoints_stay_valid():
    labels = {**KONG37, "consumer": "", "workspace": "default", "instance": "node-a:8001"}
    source = KONG.sources(settings.from_env({"TABLE_NAME": "t", "AWS_REGION": "eu-west-1"}))[0]
    assert KONG.identity(series_key(labels), source) == series_key(labels)


# -- the other gateways' keys -----------------------------------------------------------------
def test_apisix_type_route_service_consumer_map_and_empty_means_absent():
    # apisix/plugins/prometheus/exporter.lua (3.14+): type, route, service, consumer, node, LLM labels
    (source,) = APISIX.sources(None)
    labels = {"__name__": "apisix_bandwidth", "type": "ingress", "route": "12", "service": "3", "consumer": "acme",
              "node": "10.0.0.7", "request_type": "traditional_http", "request_llm_model": "", "llm_model": ""}
    assert APISIX.key(labels, source) == BandwidthKey("3", "12", "ingress", "acme")
    assert APISIX.key({**labels, "service": "", "consumer": "", "type": "egress"}, source) == \
        BandwidthKey(UNMATCHED_SERVICE, "12", "egress", "")
    # no route matched (a 404 with the plugin global): a route name that can be stored
    assert APISIX.key({**labels, "route": "", "service": "", "consumer": "", "node": ""}, source) == \
        BandwidthKey(UNMATCHED_SERVICE, NO_ROUTE, "ingress", "")
    with pytest.raises(BadSample):
        APISIX.key({**labels, "type": "sideways"}, source)


def test_traefik_and_envoy_take_the_direction_from_the_counter_and_have_no_route_or_consumer():
    requests, responses = TRAEFIK.sources(None)
    labels = {"code": "200", "method": "GET", "protocol": "http", "service": "orders@file"}
    assert TRAEFIK.key(labels, requests) == BandwidthKey("orders@file", ALL_ROUTES, "ingress", "")
    assert TRAEFIK.key(labels, responses) == BandwidthKey("orders@file", ALL_ROUTES, "egress", "")
    sent, received = ENVOY.sources(None)
    assert (sent.selector, received.selector) == ("envoy_cluster_upstream_cx_tx_bytes_total",
                                                  "envoy_cluster_upstream_cx_rx_bytes_total")
    assert ENVOY.key({"envoy_cluster_name": "orders_backend"}, sent) == BandwidthKey("orders_backend", ALL_ROUTES, "ingress", "")
    assert ENVOY.key({"envoy_cluster_name": "orders_backend"}, received).direction == "egress"


def test_a_name_holding_a_colon_is_keyed_as_in_the_default_workspace():
    (source,) = APISIX.sources(None)
    key = APISIX.key({"type": "egress", "service": "a:b", "route": "", "consumer": "c:d"}, source)
    assert (key.service, key.consumer) == ("default:a:b", "default:c:d")


def test_request_and_response_counters_with_the_same_labels_have_different_series_ids():
    requests, responses = TRAEFIK.sources(None)
    key = series_key({"code": "200", "method": "GET", "protocol": "http", "service": "s@file", "instance": "t:8080"})
    assert series_id(TRAEFIK.identity(key, requests)) != series_id(TRAEFIK.identity(key, responses))


def test_envoy_reads_a_shards_service_matcher_on_its_cluster_label():
    assert ENVOY.shard_matcher('service=~"a|b"') == 'envoy_cluster_name=~"a|b"'
    assert ENVOY.shard_matcher('service=""') == 'envoy_cluster_name=""'
    assert TRAEFIK.shard_matcher('service=~"a"') == 'service=~"a"'
    assert ENVOY.shard_matcher("") == ""


# -- the collector, per gateway ---------------------------------------------------------------
class RecordingPrometheus(FakePrometheus):
    """Adds the configured series matchers as the real client does, and keeps every selector."""

    def __init__(self, series_matchers):
        super().__init__()
        self.series_matchers = series_matchers
        self.selectors = []

    def _matching(self, selector):
        from chalicelib.collect.shards import with_matcher

        scoped = with_matcher(selector, self.series_matchers)
        self.selectors.append(scoped)
        return super()._matching(scoped)


def gateway_collector(config, gateway, matchers='job="edge"'):
    config.set(GATEWAY=gateway, PROMETHEUS_SERIES_SELECTOR=matchers)
    fake = RecordingPrometheus(config.settings().prometheus_series_selector)
    return config.start(prometheus=fake).collector, fake


def test_traefik_requests_and_responses_with_the_same_labels_count_apart_and_exactly(collector, config):
    col, prom = gateway_collector(config, "traefik")
    labels = {"code": "200", "method": "GET", "protocol": "http", "service": "orders@file", "job": "edge"}
    for node in ("traefik-a:8080", "traefik-b:8080"):
        prom.add({"__name__": TRAEFIK.REQUESTS, **labels, "instance": node}, scrape(T0 + 60, T0 + 600, 60, iter(lambda: 10, None)))
        prom.add({"__name__": TRAEFIK.RESPONSES, **labels, "instance": node}, scrape(T0 + 60, T0 + 600, 60, iter(lambda: 300, None)))
    # another target of the shared Prometheus publishing Traefik's names does not count
    prom.add({"__name__": TRAEFIK.RESPONSES, **labels, "job": "sidecar", "instance": "x:1"},
             scrape(T0 + 60, T0 + 600, 60, iter(lambda: 10**9, None)))
    assert col.run(now=T0 + 600 + 31).status == "ok"
    minutes = stored_minutes("orders@file")
    assert (sum(i for i, _ in minutes.values()), sum(e for _, e in minutes.values())) == (2 * 9 * 10, 2 * 9 * 300)
    assert prom.selectors and all(s.endswith('job="edge"}') for s in prom.selectors)
    assert {s.split("{")[0] for s in prom.selectors} == {TRAEFIK.REQUESTS, TRAEFIK.RESPONSES}
    assert bootstrap.current().store.state().schema_seen == "traefik"


def test_several_gateways_at_once_each_read_with_the_selector_and_summed_per_service(collector, config):
    col, prom = gateway_collector(config, "kong,envoy,apisix")
    prom.add({"__name__": "kong_bandwidth_bytes", "service": "pay", "route": "r", "direction": "egress", "consumer": "",
              "workspace": "default", "instance": "kong-a:8001", "job": "edge"}, scrape(T0 + 60, T0 + 600, 60, iter(lambda: 5, None)))
    prom.add({"__name__": ENVOY.RECEIVED, "envoy_cluster_name": "pay", "instance": "envoy-a:9901", "job": "edge"},
             scrape(T0 + 60, T0 + 600, 60, iter(lambda: 7, None)))
    prom.add({"__name__": ENVOY.SENT, "envoy_cluster_name": "pay", "instance": "envoy-a:9901", "job": "edge"},
             scrape(T0 + 60, T0 + 600, 60, iter(lambda: 2, None)))
    prom.add({"__name__": "apisix_bandwidth", "type": "egress", "route": "1", "service": "pay", "consumer": "acme",
              "node": "10.0.0.7", "instance": "apisix-a:9091", "job": "edge"}, scrape(T0 + 60, T0 + 600, 60, iter(lambda: 11, None)))
    assert col.run(now=T0 + 600 + 31).status == "ok"
    minutes = stored_minutes("pay")
    assert (sum(i for i, _ in minutes.values()), sum(e for _, e in minutes.values())) == (9 * 2, 9 * (5 + 7 + 11))
    assert all(s.endswith('job="edge"}') for s in prom.selectors)
    assert bootstrap.current().store.state().schema_seen == "3.7,apisix,envoy"


def test_two_workspaces_with_the_same_service_and_consumer_names_give_separate_totals(collector):
    col, prom = collector
    for workspace, per_scrape in (("default", 5), ("team-a", 700)):
        prom.add({**KONG37, "consumer": "acme", "workspace": workspace, "instance": "kong-a:8001", "job": "kong"},
                 scrape(T0 + 60, T0 + 600, 60, iter(lambda: per_scrape, None)))
    assert col.run(now=T0 + 600 + 31).status == "ok"
    store = bootstrap.current().store
    plain, team = store.range_total("orders", T0, T0 + 600), store.range_total("team-a:orders", T0, T0 + 600)
    assert (plain.egress, team.egress) == (9 * 5, 9 * 700)
    assert list(plain.consumers) == ["acme"] and plain.consumers["acme"]["egress"] == 9 * 5
    assert list(team.consumers) == ["team-a:acme"] and team.consumers["team-a:acme"]["egress"] == 9 * 700


# -- sharding: the shards' service matchers on each gateway's service label -----------------------
@pytest.mark.parametrize("gateway", ["envoy", "traefik"])
def test_four_shards_count_what_one_collector_counts_for_each_gateway(aws, config, gateway):
    from tests.unit.test_collector_shards import FLEET, collect, every

    config.set(GATEWAY=gateway, COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=60, COLLECT_TRAFFIC_STATS="false")
    prom = FakePrometheus()
    for n, service in enumerate(FLEET + ["late-service"]):
        born = T0 + 2400 if service == "late-service" else T0 - 900
        for d, direction in enumerate(("ingress", "egress")):
            for node in ("node-a:1", "node-b:1"):
                if gateway == "envoy":
                    labels = {"__name__": ENVOY.SENT if direction == "ingress" else ENVOY.RECEIVED,
                              "envoy_cluster_name": service}
                elif gateway == "traefik":
                    labels = {"__name__": TRAEFIK.REQUESTS if direction == "ingress" else TRAEFIK.RESPONSES,
                              "service": service, "code": "200", "method": "GET", "protocol": "http"}
                else:
                    labels = {"__name__": "apisix_bandwidth", "type": direction, "route": f"r{n % 3}",
                              "service": service, "consumer": "", "node": "10.0.0.1"}
                samples, total = [], 1_000_000 * (n + 1)
                for i, t in enumerate(range(born, T0 + 7200, 15)):
                    total = 5 if (node == "node-b:1" and t == T0 + 1800) else total + 10 + n + d + i % 3
                    samples.append((t, total))
                prom.add({**labels, "instance": node, "job": "edge"}, samples)
    instants = every(10, T0 + 600 + 31, T0 + 6600 + 31)
    unsharded = collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    sharded = collect(config, prom, 4, [(t, [0, 1, 2, 3]) for t in instants], "sharded")
    assert sharded == unsharded
    assert {service for service, *_ in unsharded[1]} == set(FLEET) | {"late-service"}


def test_a_shard_selects_a_workspaces_service_by_workspace_and_name():
    from chalicelib.collect import shards

    assert shards.owned_matchers({"pay", "cdn"}) == ['service=~"cdn|pay"']  # as before workspaces
    assert shards.owned_matchers({"pay", "team-a:pay", "team-a:cdn", "team-b:pay"}) == [
        'service=~"pay"', 'workspace="team-a",service=~"cdn|pay"', 'workspace="team-b",service=~"pay"']


def test_four_shards_count_what_one_collector_counts_with_the_same_names_in_three_workspaces(aws, config):
    from tests.unit.test_collector_shards import collect, every

    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=60)
    prom = FakePrometheus()
    fleet = [(ws, name) for ws in ("default", "team-a", "team-b") for name in ("pay", "search", "cdn")]
    fleet += [("team-b", "late-only-in-b")]
    for n, (workspace, name) in enumerate(fleet):
        born = T0 + 2400 if name.startswith("late") else T0 - 900
        for d, direction in enumerate(("ingress", "egress")):
            for node in ("node-a:8001", "node-b:8001"):
                samples, total = [], 1_000_000 * (n + 1)
                for i, t in enumerate(range(born, T0 + 7200, 15)):
                    total = 5 if (node == "node-b:8001" and t == T0 + 1800) else total + 10 + n + d + i % 3
                    samples.append((t, total))
                prom.add({**KONG37, "service": name, "direction": direction, "consumer": "acme", "workspace": workspace,
                          "instance": node, "job": "kong"}, samples)
                # the workspace's request counters (traffic statistics) stay with its service too
                prom.add({"__name__": "kong_http_requests_total", "service": name, "route": "v1", "code": "200",
                          "source": "service", "workspace": workspace, "consumer": "acme", "instance": node,
                          "job": "kong"}, [(t, (t - born) // 15 * (n + 1)) for t in range(born, T0 + 7200, 15)])
    instants = every(10, T0 + 600 + 31, T0 + 6600 + 31)
    unsharded = collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    sharded = collect(config, prom, 4, [(t, [0, 1, 2, 3]) for t in instants], "sharded")
    assert sharded == unsharded
    assert {service for service, *_ in unsharded[1]} == {
        "pay", "search", "cdn", "team-a:pay", "team-a:search", "team-a:cdn", "team-b:pay", "team-b:search",
        "team-b:cdn", "team-b:late-only-in-b"}
