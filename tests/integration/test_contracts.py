"""One contract per port (chalicelib/core/ports.py), run against the in-memory fake the unit
tests use and against the real adapter on a real local server: the Prometheus client on the
Prometheus binary (history built with promtool), the SES mailer on a moto server. A fake that
passes here behaves, for its callers, as the real thing does."""
import boto3
import pytest
import requests

from chalicelib.collect.prometheus import PrometheusClient, series_key
from chalicelib.core import ports
from chalicelib.core.errors import MailError, PrometheusError
from chalicelib.notify.mailer import SesMailer
from tests.fakes.mailer import RecordingMailer
from tests.fakes.prometheus import FakePrometheus
from tests.support.openmetrics import History

T0 = 1_764_547_200  # 2025-12-01T00:00:00Z: the history's own clock, fixed
METRIC = "kong_bandwidth_bytes"
EGRESS = {"service": "search", "route": "r1", "direction": "egress"}
INGRESS = {"service": "search", "route": "r1", "direction": "ingress"}
BILLING = {"service": "billing", "route": "r2", "direction": "egress"}
HISTORY = [
    (EGRESS, [(T0 + 15 * i, 1000 * (i + 1)) for i in range(8)]),  # T0 .. T0+105
    (INGRESS, [(T0 + 15 * i, 10 * (i + 1)) for i in range(8)]),
    (BILLING, [(T0 + 60, 7), (T0 + 90, 9)]),
]


# -- Prometheus ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_prometheus(prometheus_factory):
    history = History()
    for labels, samples in HISTORY:
        history.add(METRIC, labels, samples)
    server = prometheus_factory.from_history(history.render())
    return PrometheusClient(server.url)


@pytest.fixture
def fake_prometheus():
    fake = FakePrometheus()
    for labels, samples in HISTORY:
        fake.add({"__name__": METRIC, **labels}, [(float(t), float(v)) for t, v in samples])
    return fake


@pytest.fixture(params=["fake", "real"])
def prometheus(request):
    return request.getfixturevalue(f"{request.param}_prometheus")


def by_key(series):
    return {series_key(s.labels): [(float(t), float(v)) for t, v in s.samples] for s in series}


def test_prometheus_adapters_implement_the_port(prometheus):
    assert isinstance(prometheus, ports.PrometheusReader)
    assert ports.missing_methods(prometheus, ports.PrometheusReader) == []


def test_raw_samples_are_every_sample_in_the_half_open_window_exactly(prometheus):
    series = by_key(prometheus.raw_samples(f'{METRIC}{{service="search"}}', T0 + 15, T0 + 60))
    assert series == {
        series_key(EGRESS): [(T0 + 15.0, 2000.0), (T0 + 30.0, 3000.0), (T0 + 45.0, 4000.0)],
        series_key(INGRESS): [(T0 + 15.0, 20.0), (T0 + 30.0, 30.0), (T0 + 45.0, 40.0)],
    }


def test_raw_samples_honour_regex_and_negative_matchers(prometheus):
    egress = by_key(prometheus.raw_samples(f'{METRIC}{{direction=~"egr.*",service!="search"}}', T0, T0 + 120))
    assert egress == {series_key(BILLING): [(T0 + 60.0, 7.0), (T0 + 90.0, 9.0)]}


def test_raw_samples_of_an_empty_window_are_none(prometheus):
    assert list(prometheus.raw_samples(METRIC, T0 + 200, T0 + 260)) == []


def test_label_values_are_sorted_and_cover_every_series_with_samples_in_the_window(prometheus):
    assert prometheus.label_values("service", METRIC, T0, T0 + 120) == ["billing", "search"]
    # Prometheus answers by storage block, not by sample: a series sampled near the window may
    # be named too (billing's first sample is at T0+60). Callers take the names as candidates.
    assert "search" in prometheus.label_values("service", METRIC, T0, T0 + 45)
    assert set(prometheus.label_values("service", METRIC, T0, T0 + 45)) <= {"billing", "search"}


def test_label_values_of_a_window_far_from_any_sample_are_none(prometheus):
    assert prometheus.label_values("service", METRIC, T0 + 86_400, T0 + 86_460) == []


def test_last_values_are_each_series_last_sample_before_the_instant(prometheus):
    last = prometheus.last_values(f'{METRIC}{{route=~"r.*"}}', T0 + 91, 60)
    assert last == {series_key(EGRESS): 7000.0, series_key(INGRESS): 70.0, series_key(BILLING): 9.0}


def test_last_values_look_back_no_further_than_asked(prometheus):
    assert prometheus.last_values(f'{METRIC}{{service="billing"}}', T0 + 200, 60) == {}


def test_a_query_prometheus_refuses_raises_prometheus_error(prometheus):
    if isinstance(prometheus, FakePrometheus):
        prometheus.fail_with = "simulated refusal"
        selector = METRIC
    else:
        selector = METRIC + "{"  # not PromQL: the server answers 400
    with pytest.raises(PrometheusError):
        prometheus.raw_samples(selector, T0, T0 + 60)


# -- the mailer ----------------------------------------------------------------------------------
SENDER = "alerts@bandwidth-meter.test"


@pytest.fixture
def ses(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    client = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    client.verify_email_identity(EmailAddress=SENDER)
    return client


class MailerCase:
    """A mailer, and one like it whose provider refuses the next message."""

    def __init__(self, mailer, refusing):
        self.mailer, self.refusing = mailer, refusing


@pytest.fixture(params=["fake", "real"])
def mailers(request):
    if request.param == "fake":
        refusing = RecordingMailer()
        refusing.failures_left = 1
        return MailerCase(RecordingMailer(), refusing)
    ses = request.getfixturevalue("ses")
    # SES refuses a sender whose identity is not verified
    return MailerCase(SesMailer(ses, SENDER), SesMailer(ses, "nobody@unverified.test"))


def test_mailers_implement_the_port(mailers):
    assert isinstance(mailers.mailer, ports.Mailer)
    assert ports.missing_methods(mailers.mailer, ports.Mailer) == []


def test_a_sent_message_gets_its_own_provider_id(mailers):
    first = mailers.mailer.send(["ops@example.org"], "Quota 80 %", "text", "<p>html</p>")
    second = mailers.mailer.send(["ops@example.org", "dev@example.org"], "Quota 100 %", "text", "<p>html</p>")
    assert isinstance(first, str) and isinstance(second, str)
    assert first and second and first != second


def test_a_refused_message_raises_mail_error(mailers):
    with pytest.raises(MailError):
        mailers.refusing.send(["ops@example.org"], "Quota 80 %", "text", "<p>html</p>")
