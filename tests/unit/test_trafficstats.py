import pytest

from chalicelib import bootstrap
from chalicelib.api.charts import Coverage
from chalicelib.api.stats import histogram_quantile, service_stats
from tests.fakes.prometheus import FakePrometheus

T0 = 1_796_083_200 - 3600


def test_quantile_interpolates_within_the_bucket_like_prometheus():
    buckets = {"10": 50, "20": 90, "50": 100, "+Inf": 100}
    assert histogram_quantile(0.5, buckets) == 10.0
    assert histogram_quantile(0.95, buckets) == pytest.approx(20 + 30 * (95 - 90) / 10)
    assert histogram_quantile(0.25, buckets) == pytest.approx(5.0)  # first bucket's lower bound is 0


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    assert histogram_quantile(0.99, {"10": 5, "+Inf": 10}) == 10.0


def test_quantile_without_observations_is_none():
    assert histogram_quantile(0.5, {"10": 0, "+Inf": 0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_stats_from_kong3_counters_and_histogram(aws, config):
    config.set(INITIAL_BACKFILL_MINUTES=10, COLLECT_LAG_SECONDS=0)
    prom = FakePrometheus()
    base = {"service": "pay", "route": "r", "workspace": "default", "instance": "n1"}
    # Prometheus keeps scraping the idle counter, so every minute of the window is observed.
    prom.add({**base, "__name__": "kong_bandwidth_bytes", "direction": "egress", "consumer": ""},
             [(T0 - 30, 0)] + [(t, 100) for t in range(T0 + 30, T0 + 600, 30)])
    prom.add({**base, "__name__": "kong_http_requests_total", "code": "200", "source": "service", "consumer": ""},
             [(T0 - 30, 1000), (T0 + 30, 1090), (T0 + 90, 1180)])
    prom.add({**base, "__name__": "kong_http_requests_total", "code": "503", "source": "upstream", "consumer": ""},
             [(T0 - 30, 7), (T0 + 30, 12), (T0 + 90, 17)])
    for le, (a, b) in {"10": (100, 150), "50": (180, 280), "+Inf": (200, 300)}.items():
        prom.add({**base, "__name__": "kong_request_latency_ms_bucket", "le": le}, [(T0 - 30, a), (T0 + 30, b)])
    prom.add({**base, "__name__": "kong_request_latency_ms_sum"}, [(T0 - 30, 5000.0), (T0 + 30, 6500.5)])
    prom.add({**base, "__name__": "kong_request_latency_ms_count"}, [(T0 - 30, 200), (T0 + 30, 300)])
    config.start(prometheus=prom).collector.run(now=T0 + 600)
    store = bootstrap.current().store
    coverage = Coverage.from_state(store.state())
    stats = service_stats(store, coverage, "pay", T0, T0 + 600, "5m")
    assert stats["requests_count"] == {"success": 180, "error": 10}
    assert stats["by_status"] == {"200": 180, "503": 10}
    assert stats["latency_ms"]["average"] == pytest.approx(15.005)
    assert stats["latency_ms"]["p95"] == pytest.approx(10 + 40 * (95 - 50) / 50)
    assert [p["requests_count"] for p in stats["series"]] == [{"success": 180, "error": 10},
                                                              {"success": 0, "error": 0}]
