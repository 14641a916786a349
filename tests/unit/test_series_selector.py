"""PROMETHEUS_SERIES_SELECTOR: checked strictly at start (it is spliced into every query), added
by the Prometheus client to every selector it sends, and shown by /v1/collector/status."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.api.status import collector_status
from chalicelib.collect.prometheus import PrometheusClient
from chalicelib.core.models import STATE_KEY, CollectorState
from chalicelib.core.settings import ConfigError, from_env
from tests.conftest import BASE_ENV

IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "bandwidth-meter-prod-collect"}


def selector(text, **env):
    return from_env({**BASE_ENV, "PROMETHEUS_SERIES_SELECTOR": text, **env}).prometheus_series_selector


@pytest.mark.parametrize("text, rendered", [
    ('{job="kong"}', 'job="kong"'),
    ('job="kong"', 'job="kong"'),
    (' { job = "kong" , env =~ "prod|eu" , } ', 'job="kong",env=~"prod|eu"'),
    ('job!="sidecar",instance!~"test-.*"', 'job!="sidecar",instance!~"test-.*"'),
    (r'cluster="a\"b\\c"', r'cluster="a\"b\\c"'),
    (r'host=~"kong\\.prod\\.example"', r'host=~"kong\\.prod\\.example"'),
])
def test_label_matchers_are_accepted_and_re_rendered(text, rendered):
    assert selector(text) == rendered


def test_no_selector_is_none():
    assert from_env(BASE_ENV).prometheus_series_selector is None
    assert selector("   ") is None


@pytest.mark.parametrize("text", [
    '{job="kong"} or vector(1)',            # a second expression
    'job="kong"}) or up{job=~".+"',          # closing the braces early
    'job="kong"} or kong_bandwidth_bytes{',  # the same, unbalanced
    'kong_bandwidth_bytes{job="kong"}',      # a metric name
    '__name__=~".+"',                        # the collector picks the metrics
    'job=kong',                              # unquoted
    "job='kong'",                            # single quotes
    'job=`kong`',                            # backticks
    'job="kong',                             # no closing quote
    r'job="a\q"',                            # an escape PromQL would read otherwise
    'job=="kong"', 'job~"kong"', 'job<"k"',  # no such operator
    '1job="kong"', 'jo-b="kong"', 'job.x="kong"',  # not label names
    'job="a" env="b"',                       # no comma
    'job=~"("',                              # a regex that does not compile
    '{}', ',', 'job="x",,env="y"',
    'job="a\nb"', 'job="a\x00"',             # control characters in a value
])
def test_anything_but_label_matchers_fails_at_start_naming_the_variable(text):
    with pytest.raises(ConfigError, match="PROMETHEUS_SERIES_SELECTOR"):
        selector(text)


@pytest.fixture
def prometheus():
    """Records every query and match[] the client sends; answers empty results."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, params):
            seen.append(params)
            if self.path.startswith("/api/v1/label/"):
                data = []
            elif params["query"][0].startswith("last_over_time"):
                data = {"resultType": "vector", "result": []}
            else:
                data = {"resultType": "matrix", "result": []}
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self._answer(parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()))

        def do_GET(self):
            self._answer(parse_qs(urlsplit(self.path).query))

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def test_the_client_adds_the_selector_to_every_selector_it_sends(prometheus):
    url, seen = prometheus
    settings = from_env({**BASE_ENV, "PROMETHEUS_URL": url, "PROMETHEUS_SERIES_SELECTOR": '{job="kong",env="prod"}'})
    client = PrometheusClient.from_settings(settings)
    client.raw_samples('{__name__=~"kong_bandwidth|kong_bandwidth_bytes"}', 0, 60)
    client.raw_samples("kong_bandwidth_bytes", 0, 60)
    client.last_values('{__name__=~"kong_http_status",service=~"pay"}', 60, 3600)
    client.label_values("service", '{__name__=~"kong_bandwidth|kong_bandwidth_bytes"}', 0, 60)
    assert [p.get("query", p.get("match[]"))[0] for p in seen] == [
        '{__name__=~"kong_bandwidth|kong_bandwidth_bytes",job="kong",env="prod"}[60000ms]',
        'kong_bandwidth_bytes{job="kong",env="prod"}[60000ms]',
        'last_over_time({__name__=~"kong_http_status",service=~"pay",job="kong",env="prod"}[3600s])',
        '{__name__=~"kong_bandwidth|kong_bandwidth_bytes",job="kong",env="prod"}',
    ]


def test_without_a_selector_the_queries_are_unchanged(prometheus):
    url, seen = prometheus
    PrometheusClient.from_settings(from_env({**BASE_ENV, "PROMETHEUS_URL": url})).raw_samples("m", 0, 60)
    assert seen[0]["query"] == ["m[60000ms]"]


def test_the_status_says_which_selector_is_in_force_and_warns_in_aws_without_one():
    state = CollectorState(*STATE_KEY)
    with_one = from_env({**BASE_ENV, "PROMETHEUS_SERIES_SELECTOR": 'job="kong"', **IN_LAMBDA,
                         "API_KEYS_PARAMETER_PATH": "/bandwidth-meter/prod/api-keys", "STAGE": "prod"})
    assert collector_status(state, with_one, now=0)["series_selector"] == {"in_force": '{job="kong"}', "warning": None}
    without = from_env({**BASE_ENV, **IN_LAMBDA, "STAGE": "prod"})
    shown = collector_status(state, without, now=0)["series_selector"]
    assert shown["in_force"] is None and "PROMETHEUS_SERIES_SELECTOR is not set" in shown["warning"]
    locally = collector_status(state, from_env(BASE_ENV), now=0)["series_selector"]
    assert locally == {"in_force": None, "warning": None}
