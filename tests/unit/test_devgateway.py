"""The development gateway's Kong exposition, line by line for each schema, and its stats."""
import pytest

from localrun.devgateway import InMemoryStats, KongMetrics, load_config


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
