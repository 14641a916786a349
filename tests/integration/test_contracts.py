"""One contract per port (chalicelib/core/ports.py), run against the in-memory fake the unit
tests use and against the real adapter on a real local server: the Prometheus client on the
Prometheus binary (history built with promtool), the SES mailer and the alert ledger on a moto
server, the Kong Admin API adapter on the development gateway's Admin API. A fake that
passes here behaves, for its callers, as the real thing does."""
import boto3
import pytest
import requests

from chalicelib.collect.prometheus import PrometheusClient, series_key
from chalicelib.core import ports
from chalicelib.core.alert_ledger import AlertLedger
from chalicelib.core.errors import GatewayError, GatewayServiceNotFound, MailError, PrometheusError
from chalicelib.core.models import Alert
from chalicelib.enforce.kong_admin import KongAdmin
from chalicelib.notify.mailer import SesMailer
from localrun.kongadmin import AdminServer, AdminState
from tests.fakes.kong import InMemoryKongAdmin
from tests.fakes.ledger import InMemoryAlertLedger
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


# -- the alert ledger ------------------------------------------------------------------------------
PERIOD_START, PERIOD_END = T0, T0 + 31 * 86_400


@pytest.fixture(params=["fake", "real"])
def ledger(request):
    if request.param == "fake":
        return InMemoryAlertLedger()
    request.getfixturevalue("aws_server")  # a fresh table on the moto server
    return AlertLedger()


def alert(threshold, status="pending", claimed_at=T0 + 100, **fields):
    return Alert.record("pay", PERIOD_START, threshold, period_end=PERIOD_END, status=status, usage_bytes=800,
                        limit_bytes=1000, recipients=["owner@example.com"], crossed_at=T0 + 90,
                        claimed_at=claimed_at, **fields)


def test_ledgers_implement_the_port(ledger):
    assert isinstance(ledger, ports.AlertLedgerPort)


def test_only_the_first_claim_of_an_alert_wins(ledger):
    assert ledger.claim(alert(80.0), None) is True
    assert ledger.claim(alert(80.0, claimed_at=T0 + 101), None) is False
    assert {k: a.status for k, a in ledger.for_period("pay", PERIOD_START).items()} == {80.0: "pending"}


def test_a_lower_threshold_is_not_claimed_once_a_higher_one_is(ledger):
    assert ledger.claim(alert(100.0), None) is True
    assert ledger.claim(alert(80.0), None, higher=[100.0]) is False
    assert list(ledger.for_period("pay", PERIOD_START)) == [100.0]


def test_a_claim_over_what_was_read_wins_only_if_it_has_not_changed_since(ledger):
    ledger.claim(alert(80.0), None)
    before = ledger.for_period("pay", PERIOD_START)[80.0]
    ledger.mark_failed(ledger.for_period("pay", PERIOD_START)[80.0], "SES refused")
    assert ledger.claim(alert(80.0, claimed_at=T0 + 200), before) is False  # read before it failed
    failed = ledger.for_period("pay", PERIOD_START)[80.0]
    assert failed.status == "failed" and failed.error == "SES refused"
    assert ledger.claim(alert(80.0, claimed_at=T0 + 200), failed) is True


def test_a_claimed_alert_is_due_until_it_is_sent(ledger):
    ledger.claim(alert(80.0), None)
    assert [a.ledger_key for a in ledger.due()] == [80.0]
    ledger.mark_sent(ledger.due()[0], T0 + 120)
    assert ledger.due() == []
    [entry] = ledger.history("pay")
    assert (entry["status"], entry["threshold"], entry["recipients"]) == ("sent", 80.0, ["owner@example.com"])


def test_a_covered_threshold_is_recorded_once_unless_it_failed(ledger):
    assert ledger.record_covered(alert(80.0, status="covered", covered_by=100.0)) is True
    assert ledger.record_covered(alert(80.0, status="covered", covered_by=100.0)) is False


def test_rearming_forgets_an_alert_only_as_it_was_read(ledger):
    ledger.claim(alert(80.0), None)
    read = ledger.for_period("pay", PERIOD_START)[80.0]
    stale = alert(80.0, claimed_at=T0 + 50)
    assert ledger.rearm(stale) is False
    assert ledger.rearm(read) is True
    assert ledger.for_period("pay", PERIOD_START) == {}


def test_an_unfinished_rules_change_is_remembered_until_cleared(ledger):
    assert ledger.reevaluation_due() is None
    ledger.request_reevaluation("pay", T0)
    assert ledger.reevaluation_due() == "pay"
    ledger.request_reevaluation(None, T0 + 1)
    assert ledger.reevaluation_due() is None


# -- the Kong Admin API ------------------------------------------------------------------------------
class KongWorld:
    """A Kong adapter with services pay and search, and how to add an operator's own block."""

    def __init__(self, kong, add_foreign_block):
        self.kong, self.add_foreign_block = kong, add_foreign_block


@pytest.fixture(params=["fake", "real"])
def kong(request):
    if request.param == "fake":
        fake = InMemoryKongAdmin(["pay", "search"])
        yield KongWorld(fake, fake.add_foreign_block)
        return
    state = AdminState(["pay", "search"])
    server = AdminServer(state).start()
    try:
        def foreign(service):
            return state.create_plugin(state.service(service), {"name": "request-termination",
                                                                "config": {"message": "maintenance"}})[1]["id"]

        yield KongWorld(KongAdmin(server.url, timeout=2, sleep=lambda s: None), foreign)
    finally:
        server.stop()


def test_kong_adapters_implement_the_port(kong):
    assert isinstance(kong.kong, ports.KongAdminPort)


def test_blocking_is_idempotent_and_listed_with_the_service_and_message(kong):
    first = kong.kong.block("pay", "over quota")
    assert kong.kong.block("pay", "over quota") == first
    ours = kong.kong.list_our_plugins()
    assert [(p.id, p.service, p.message) for p in ours.blocks] == [(first, "pay", "over quota")]
    assert ours.drift == []


def test_unblocking_removes_the_block_and_is_idempotent(kong):
    plugin = kong.kong.block("search", "over quota")
    kong.kong.unblock(plugin)
    kong.kong.unblock(plugin)  # already gone: nothing to do
    assert kong.kong.list_our_plugins().blocks == []


def test_an_unknown_service_is_its_own_error(kong):
    with pytest.raises(GatewayServiceNotFound):
        kong.kong.block("ghost", "over quota")


def test_an_operators_own_block_is_left_alone_and_not_listed_as_ours(kong):
    kong.add_foreign_block("pay")
    with pytest.raises(GatewayError, match="not tagged"):
        kong.kong.block("pay", "over quota")
    ours = kong.kong.list_our_plugins()
    assert ours.blocks == [] and ours.drift == []
