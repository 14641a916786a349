"""Alerts end to end on a moto server process: the collector writes usage, the stream poller
(playing Lambda's event-source mapping) feeds app.alerts, and SES messages are read back
from the emulator."""
import boto3
import pytest
import requests

from chalicelib import bootstrap
from localrun.streams import StreamPoller
from tests.fakes.prometheus import FakePrometheus
from tests.support.streams import alerts_poller, drain

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
T0 = DEC1 - 20 * 60


def labels(service):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": "r", "direction": "egress",
            "consumer": "", "workspace": "default", "instance": "n1"}


@pytest.fixture
def flow(aws_server, config, moto_server):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=1)
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    ses.verify_email_identity(EmailAddress="alerts@bandwidth-meter.test")
    prom = FakePrometheus()
    collector = config.start(prometheus=prom).collector

    class Flow:
        poller = alerts_poller(moto_server, aws_server.table_name)

        @staticmethod
        def minute(n, per_service):
            """Traffic in minute T0+n (bytes per service), then a collector run and a stream poll."""
            for service, nbytes in per_service.items():
                series = prom.series.get(tuple(sorted(labels(service).items())))
                total = series[1][-1][1] if series else 0
                prom.add(labels(service), [(T0 + 60 * n + 30, total + nbytes)])
            collector.run(now=T0 + 60 * (n + 1))
            drain(Flow.poller)

        @staticmethod
        def subjects():
            data = requests.get(f"{moto_server}/moto-api/data.json", timeout=5).json()
            return [m["subject"] for m in data["ses"]["Message"]]

    for service in ("pay", "media"):
        prom.add(labels(service), [(T0 - 30, 0)])
    book = bootstrap.current().quotas
    book.put("pay", {"limit_bytes": 10_000, "notify": ["pay-owner@example.com"]})
    book.put("media", {"limit_bytes": 10_000, "notify": ["media-owner@example.com"]})
    return Flow


def test_gradual_growth_sends_80_90_100_once_each(flow):
    for n in range(12):
        flow.minute(n, {"pay": 1_000})
    assert flow.subjects() == [f"[Bandwidth Meter] pay reached {t}% of its monthly quota" for t in (80, 90, 100)]


def test_a_jump_sends_one_email_and_a_replayed_batch_sends_nothing(flow, moto_server):
    flow.minute(0, {"media": 5_000})
    flow.minute(1, {"media": 7_000})
    assert flow.subjects() == ["[Bandwidth Meter] media reached 100% of its monthly quota"]
    statuses = {a["threshold"]: a["status"] for a in bootstrap.current().ledger.history("media")}
    assert statuses == {100.0: "sent", 90.0: "covered", 80.0: "covered"}
    replay = StreamPoller(flow.poller.client, flow.poller.stream_arn, flow.poller.handler, sleep=lambda s: None)
    while replay.poll_once():
        pass
    assert replay.invocations >= 1 and len(flow.subjects()) == 1


def test_ses_failing_then_recovering_ends_in_exactly_one_email(flow, moto_server, config):
    config.set(ALERT_FROM="late@bandwidth-meter.test")  # not verified yet: SES refuses
    config.start()
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    # SES recovers while the poller backs off before its retry.
    flow.poller.sleep = lambda seconds: ses.verify_email_identity(EmailAddress="late@bandwidth-meter.test")
    flow.minute(0, {"pay": 8_500})
    assert flow.subjects() == ["[Bandwidth Meter] pay reached 80% of its monthly quota"]
    assert flow.poller.invocations >= 2 and flow.poller.skipped_batches == 0


def test_a_new_period_rearms_the_thresholds(flow):
    for n in range(20):  # 23:40 to 23:59 on 2026-11-30: 95 % of November's quota
        flow.minute(n, {"pay": 475})
    flow.minute(20, {"pay": 9_000})  # 2026-12-01T00:00: 90 % of December's
    assert flow.subjects() == [
        "[Bandwidth Meter] pay reached 80% of its monthly quota",
        "[Bandwidth Meter] pay reached 90% of its monthly quota",
        "[Bandwidth Meter] pay reached 90% of its monthly quota",
    ]
